//! Market data: OpenRouter's public rankings dataset (the JSON `GET /datasets/rankings-daily`
//! returns) imported as a named source, apart from llmux's own traffic. A file is checked
//! whole before anything is written: one malformed row rejects it, naming the row.

use std::collections::HashMap;

use serde_json::Value;

use crate::catalog::Catalog;
use crate::metering::rollup::parse_date;
use crate::storage::MarketRow;

/// Longest permaslug accepted.
const MAX_PERMASLUG: usize = 200;

/// The catalog model a dated permaslug names: `deepseek/deepseek-v3.2-20251201` →
/// `deepseek/deepseek-v3.2`, keeping a `:variant`. Unknown ones lose their date suffix and
/// keep their author prefix, so author and origin still resolve.
pub fn model_for_permaslug(catalog: &Catalog, permaslug: &str) -> String {
    let (base, variant) = permaslug
        .split_once(':')
        .map_or((permaslug, None), |(b, v)| (b, Some(v)));
    let with_variant = |id: &str| match variant {
        Some(v) if !id.ends_with(&format!(":{v}")) => format!("{id}:{v}"),
        _ => id.to_string(),
    };
    if let Some(m) = catalog.model_by_permaslug(base) {
        return with_variant(&m.id);
    }
    if catalog.model(base).is_some() {
        return with_variant(base);
    }
    let stripped = strip_date_suffix(base);
    if let Some(m) = catalog.model_by_permaslug(stripped) {
        return with_variant(&m.id);
    }
    with_variant(stripped)
}

/// `x-20251201` or `x-2025-12-01` → `x`.
fn strip_date_suffix(s: &str) -> &str {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = s.rsplit_once('-')
        && tail.len() == 8
        && digits(tail)
    {
        return head;
    }
    // -YYYY-MM-DD
    if s.len() > 11 {
        let (head, tail) = s.split_at(s.len() - 11);
        let b = tail.as_bytes();
        if b[0] == b'-'
            && digits(&tail[1..5])
            && b[5] == b'-'
            && digits(&tail[6..8])
            && b[8] == b'-'
            && digits(&tail[9..11])
        {
            return head;
        }
    }
    s
}

/// Check and map a whole file. Errors name the first bad row (`data[17].total_tokens: ...`).
pub fn parse(bytes: &[u8], catalog: &Catalog) -> Result<Vec<MarketRow>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("expected an object with a \"data\" array (the rankings-daily dataset)")?;
    let mut rows = Vec::with_capacity(data.len());
    let mut seen: HashMap<(i64, String), usize> = HashMap::new();
    for (i, row) in data.iter().enumerate() {
        let at = |field: &str, msg: String| format!("data[{i}].{field}: {msg}");
        let o = row
            .as_object()
            .ok_or_else(|| format!("data[{i}]: expected an object"))?;
        let date = o
            .get("date")
            .and_then(Value::as_str)
            .ok_or_else(|| at("date", "required, as YYYY-MM-DD".into()))?;
        let day = parse_date(date)
            .ok_or_else(|| at("date", format!("expected YYYY-MM-DD, got {date:?}")))?;
        let permaslug = o
            .get("model_permaslug")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| at("model_permaslug", "required, a non-empty string".into()))?;
        if permaslug.len() > MAX_PERMASLUG {
            return Err(at(
                "model_permaslug",
                format!("longer than {MAX_PERMASLUG} characters"),
            ));
        }
        let tokens = match o.get("total_tokens") {
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<i64>()
                .map_err(|_| at("total_tokens", format!("{s} is too large")))?,
            Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n >= 0) => {
                n.as_i64().expect("checked")
            }
            other => {
                return Err(at(
                    "total_tokens",
                    format!(
                        "expected a decimal string of digits, got {}",
                        other.map_or("nothing".to_string(), Value::to_string)
                    ),
                ));
            }
        };
        if let Some(first) = seen.insert((day, permaslug.to_string()), i) {
            return Err(format!(
                "data[{i}]: repeats data[{first}] ({date}, {permaslug})"
            ));
        }
        rows.push(MarketRow {
            day,
            permaslug: permaslug.to_string(),
            model: model_for_permaslug(catalog, permaslug),
            tokens,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_suffixes() {
        assert_eq!(
            strip_date_suffix("deepseek/deepseek-v3.2-20251201"),
            "deepseek/deepseek-v3.2"
        );
        assert_eq!(
            strip_date_suffix("openai/gpt-4o-2024-05-13"),
            "openai/gpt-4o"
        );
        assert_eq!(strip_date_suffix("acme/model-7b"), "acme/model-7b");
        assert_eq!(strip_date_suffix("x"), "x");
    }
}
