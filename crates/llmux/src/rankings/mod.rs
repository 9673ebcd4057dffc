//! Rankings and analytics, read from the rollups (never from raw records): who uses how many
//! tokens by model, author, country of origin, provider and app, how that changes period over
//! period ([`table`]); OpenRouter's public datasets ([`datasets`]); imported market data
//! ([`market`]); and price comparisons with a what-if repricing of real usage ([`compare`]).

pub mod activity;
pub mod cache;
pub mod compare;
pub mod datasets;
pub mod market;
pub mod table;

use std::fmt;

use crate::catalog::Catalog;

/// A query that cannot be answered as asked (400), or a failure underneath (500).
#[derive(Debug)]
pub enum QueryError {
    Invalid(String),
    NotFound(String),
    Internal(anyhow::Error),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Invalid(m) | QueryError::NotFound(m) => f.write_str(m),
            QueryError::Internal(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for QueryError {}

impl From<anyhow::Error> for QueryError {
    fn from(e: anyhow::Error) -> Self {
        QueryError::Internal(e)
    }
}

pub fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::Invalid(msg.into())
}

/// The author of a model id (`deepseek/deepseek-v3.2:free` → `deepseek`).
pub fn author_of(model: &str) -> &str {
    model.split_once('/').map_or(model, |(a, _)| a)
}

/// The country of origin of a model's author, `unknown` when not established.
pub fn origin_of(catalog: &Catalog, model: &str) -> String {
    catalog
        .author(author_of(model))
        .and_then(|a| a.origin.clone())
        .filter(|o| !o.is_empty() && o != "unknown")
        .unwrap_or_else(|| "unknown".to_string())
}

/// A country's name for an ISO 3166 code (the origins the catalog knows, and a few more).
pub fn country_name(code: &str) -> &str {
    match code {
        "US" => "United States",
        "CN" => "China",
        "FR" => "France",
        "GB" => "United Kingdom",
        "DE" => "Germany",
        "CA" => "Canada",
        "IL" => "Israel",
        "KR" => "South Korea",
        "JP" => "Japan",
        "IN" => "India",
        "AE" => "United Arab Emirates",
        "SG" => "Singapore",
        "CH" => "Switzerland",
        "unknown" => "Unknown",
        other => other,
    }
}

/// `num / den` as a percentage in hundredths (6565 = 65.65%), rounded half away from zero.
/// None when `den` is zero.
pub fn percent_hundredths(num: i128, den: i128) -> Option<i64> {
    if den == 0 {
        return None;
    }
    let scaled = num * 10_000;
    let q = scaled / den;
    let r = scaled % den;
    let round_up = (r.abs() * 2) >= den.abs();
    let q = if round_up {
        q + if (scaled < 0) != (den < 0) { -1 } else { 1 }
    } else {
        q
    };
    i64::try_from(q).ok()
}

/// The change from `before` to `after` in hundredths of a percent (+25.24% = 2524).
pub fn change_hundredths(before: i64, after: i64) -> Option<i64> {
    percent_hundredths(after as i128 - before as i128, before as i128)
}

/// Hundredths of a percent as a JSON-friendly number (6565 → 65.65).
pub fn hundredths_f64(h: i64) -> f64 {
    h as f64 / 100.0
}

/// Tokens for people: 5160000000000 → "5.16T".
pub fn human_tokens(n: i64) -> String {
    let units = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")];
    let v = n as f64;
    for (scale, unit) in units {
        if v.abs() >= scale {
            return format!("{:.2}{unit}", v / scale);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_half_away_from_zero() {
        assert_eq!(percent_hundredths(516, 786), Some(6565));
        assert_eq!(change_hundredths(412, 516), Some(2524));
        assert_eq!(change_hundredths(100, 50), Some(-5000));
        assert_eq!(change_hundredths(0, 50), None);
        assert_eq!(percent_hundredths(1, 8), Some(1250));
        assert_eq!(percent_hundredths(-1, 8000), Some(-1)); // -0.0125% → -0.01
        assert_eq!(percent_hundredths(-3, 16_000), Some(-2)); // -0.01875% → -0.02
        assert_eq!(human_tokens(5_160_000_000_000), "5.16T");
        assert_eq!(human_tokens(999), "999");
    }
}
