//! OpenRouter's `provider` routing preferences, checked into typed form (a malformed field is
//! a 400 that names it).

use serde_json::{Map, Value};

use crate::money::Price;
use crate::router::health::Percentiles;
use crate::server::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Price,
    Throughput,
    Latency,
}

/// `partition: model` sorts within each model (models stay in fallback order); `none` sorts
/// every endpoint of every model together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Model,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub by: SortBy,
    pub partition: Partition,
}

/// Ceilings, in USD per million tokens (`request`, `image`: per unit), as picodollars per unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaxPrice {
    pub prompt: Option<Price>,
    pub completion: Option<Price>,
    pub request: Option<Price>,
    pub image: Option<Price>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preferences {
    pub order: Vec<String>,
    pub allow_fallbacks: bool,
    pub require_parameters: bool,
    /// `deny`: only providers that do not store or train on prompts.
    pub deny_data_collection: bool,
    pub zdr: bool,
    pub only: Vec<String>,
    pub ignore: Vec<String>,
    pub quantizations: Vec<String>,
    pub sort: Option<Sort>,
    pub max_price: MaxPrice,
    /// Tokens per second, at any of p50/p75/p90/p99 (a bare number is the p50).
    pub preferred_min_throughput: Option<Cutoffs>,
    /// Seconds to first token, at any of p50/p75/p90/p99 (a bare number is the p50).
    pub preferred_max_latency: Option<Cutoffs>,
}

/// OpenRouter's percentile cutoffs: each one given must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cutoffs {
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

impl Cutoffs {
    /// Pairs of (cutoff, measured) for the percentiles given.
    pub fn pairs(&self, measured: &Percentiles) -> impl Iterator<Item = (f64, f64)> {
        [
            (self.p50, measured.p50),
            (self.p75, measured.p75),
            (self.p90, measured.p90),
            (self.p99, measured.p99),
        ]
        .into_iter()
        .filter_map(|(c, m)| c.map(|c| (c, m)))
    }
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            allow_fallbacks: true,
            require_parameters: false,
            deny_data_collection: false,
            zdr: false,
            only: Vec::new(),
            ignore: Vec::new(),
            quantizations: Vec::new(),
            sort: None,
            max_price: MaxPrice::default(),
            preferred_min_throughput: None,
            preferred_max_latency: None,
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn strings(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| s.to_ascii_lowercase())
                    .ok_or_else(|| bad(format!("provider.{key}: expected an array of strings")))
            })
            .collect(),
        Some(_) => Err(bad(format!("provider.{key}: expected an array of strings"))),
    }
}

fn boolean(o: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(format!("provider.{key}: expected true or false"))),
    }
}

fn sort_by(s: &str) -> Result<SortBy, ApiError> {
    match s {
        "price" => Ok(SortBy::Price),
        "throughput" => Ok(SortBy::Throughput),
        "latency" => Ok(SortBy::Latency),
        other => Err(bad(format!(
            "provider.sort: unknown value {other:?} (expected price, throughput or latency)"
        ))),
    }
}

/// A number (the p50), or OpenRouter's percentile object `{p50, p75, p90, p99}`.
fn percentile_number(o: &Map<String, Value>, key: &str) -> Result<Option<Cutoffs>, ApiError> {
    let expected = || {
        bad(format!(
            "provider.{key}: expected a number or {{\"p50\"|\"p75\"|\"p90\"|\"p99\": number}}"
        ))
    };
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(Cutoffs {
            p50: n.as_f64(),
            ..Cutoffs::default()
        })),
        Some(Value::Object(p)) => {
            let mut c = Cutoffs::default();
            for (name, v) in p {
                let slot = match name.as_str() {
                    "p50" => &mut c.p50,
                    "p75" => &mut c.p75,
                    "p90" => &mut c.p90,
                    "p99" => &mut c.p99,
                    _ => return Err(expected()),
                };
                match v {
                    Value::Null => {}
                    Value::Number(n) => *slot = n.as_f64(),
                    _ => return Err(expected()),
                }
            }
            Ok((c != Cutoffs::default()).then_some(c))
        }
        Some(_) => Err(expected()),
    }
}

fn per_million(v: Option<&Value>, key: &str, unit: bool) -> Result<Option<Price>, ApiError> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad(format!("provider.max_price.{key}: expected a number"))),
    };
    let p = if unit {
        Price::per_unit_usd(&text)
    } else {
        Price::per_million_usd(&text)
    }
    .map_err(|e| bad(format!("provider.max_price.{key}: {e}")))?;
    if p.0 < 0 {
        return Err(bad(format!(
            "provider.max_price.{key}: must not be negative"
        )));
    }
    Ok(Some(p))
}

impl Preferences {
    /// Parse the request's `provider` object.
    pub fn parse(v: Option<&Value>) -> Result<Preferences, ApiError> {
        let mut p = Preferences::default();
        let o = match v {
            None | Some(Value::Null) => return Ok(p),
            Some(Value::Object(o)) => o,
            Some(_) => return Err(bad("provider: expected an object")),
        };
        p.order = strings(o, "order")?;
        p.only = strings(o, "only")?;
        p.ignore = strings(o, "ignore")?;
        p.quantizations = strings(o, "quantizations")?;
        p.allow_fallbacks = boolean(o, "allow_fallbacks")?.unwrap_or(true);
        p.require_parameters = boolean(o, "require_parameters")?.unwrap_or(false);
        p.zdr = boolean(o, "zdr")?.unwrap_or(false);
        p.deny_data_collection = match o.get("data_collection") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) if s == "allow" => false,
            Some(Value::String(s)) if s == "deny" => true,
            Some(_) => return Err(bad("provider.data_collection: expected allow or deny")),
        };
        p.sort = match o.get("sort") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Sort {
                by: sort_by(s)?,
                partition: Partition::Model,
            }),
            Some(Value::Object(s)) => {
                let by = s
                    .get("by")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("provider.sort.by: required"))?;
                let partition = match s.get("partition").and_then(Value::as_str) {
                    None | Some("model") => Partition::Model,
                    Some("none") => Partition::None,
                    Some(other) => {
                        return Err(bad(format!(
                            "provider.sort.partition: unknown value {other:?} (expected model or none)"
                        )));
                    }
                };
                Some(Sort {
                    by: sort_by(by)?,
                    partition,
                })
            }
            Some(_) => return Err(bad("provider.sort: expected a string or {by, partition}")),
        };
        if let Some(mp) = o.get("max_price").filter(|v| !v.is_null()) {
            let Value::Object(mp) = mp else {
                return Err(bad("provider.max_price: expected an object"));
            };
            p.max_price = MaxPrice {
                prompt: per_million(mp.get("prompt"), "prompt", false)?,
                completion: per_million(mp.get("completion"), "completion", false)?,
                request: per_million(mp.get("request"), "request", true)?,
                image: per_million(mp.get("image"), "image", true)?,
            };
        }
        p.preferred_min_throughput = percentile_number(o, "preferred_min_throughput")?;
        p.preferred_max_latency = percentile_number(o, "preferred_max_latency")?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_field() {
        let p = Preferences::parse(Some(&json!({
            "order": ["A", "b"], "allow_fallbacks": false, "require_parameters": true, "data_collection": "deny",
            "zdr": true, "only": ["a"], "ignore": ["c"], "quantizations": ["fp8"],
            "sort": {"by": "throughput", "partition": "none"},
            "max_price": {"prompt": 1, "completion": "2.5", "request": 0.01},
            "preferred_min_throughput": {"p50": 100, "p90": 40}, "preferred_max_latency": 2
        })))
        .unwrap();
        assert_eq!(p.order, vec!["a", "b"]);
        assert!(!p.allow_fallbacks && p.require_parameters && p.deny_data_collection && p.zdr);
        assert_eq!(p.sort.unwrap().partition, Partition::None);
        assert_eq!(p.max_price.completion, Some(Price(2_500_000)));
        assert_eq!(p.max_price.request, Some(Price(10_000_000_000)));
        let min = p.preferred_min_throughput.unwrap();
        assert_eq!((min.p50, min.p75, min.p90), (Some(100.0), None, Some(40.0)));
        assert_eq!(p.preferred_max_latency.unwrap().p50, Some(2.0));
    }

    #[test]
    fn malformed_fields_are_named() {
        for (v, field) in [
            (json!({"sort": "fastest"}), "provider.sort"),
            (json!({"order": "a"}), "provider.order"),
            (
                json!({"data_collection": "maybe"}),
                "provider.data_collection",
            ),
            (
                json!({"max_price": {"prompt": -1}}),
                "provider.max_price.prompt",
            ),
            (json!("x"), "provider"),
            (
                json!({"preferred_max_latency": {"p95": 1}}),
                "provider.preferred_max_latency",
            ),
        ] {
            let e = Preferences::parse(Some(&v)).unwrap_err();
            assert!(e.message.starts_with(field), "{}", e.message);
        }
    }
}
