//! Price comparison between models, and a what-if: real token usage over a period repriced on
//! other models ("your 1.2B tokens last week on A cost $X; on B they would have cost $Y").
//! Every figure is exact: prices are integer picodollars per token, ratios are decimals.

use std::collections::BTreeMap;

use llmux_protocol::canonical::Usage;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::table::as_string;
use super::{QueryError, invalid};
use crate::catalog::{Catalog, Pricing};
use crate::metering::rollup::{Period, Sums, date_string, end_date_string, parse_date};
use crate::money::{Money, Price};
use crate::storage::Store;

/// Most models one comparison takes.
pub const MAX_MODELS: usize = 12;

#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    /// USD per million tokens, exact decimals.
    pub prompt: String,
    pub completion: String,
    pub input_cache_read: Option<String>,
    pub input_cache_write: Option<String>,
    /// USD per request.
    pub request: String,
}

impl Prices {
    pub fn of(p: &Pricing) -> Prices {
        let m = |p: Price| p.per_million().to_string();
        Prices {
            prompt: m(p.prompt),
            completion: m(p.completion),
            input_cache_read: p.input_cache_read.map(m),
            input_cache_write: p.input_cache_write.map(m),
            request: Decimal::from_i128_with_scale(p.request.0 as i128, 12)
                .normalize()
                .to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub id: String,
    pub name: String,
    pub author: String,
    pub origin: String,
    pub context_length: Option<u64>,
    pub pricing: Prices,
}

/// `a`'s price divided by `b`'s, per token type.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub a: String,
    pub b: String,
    pub prompt: Option<String>,
    pub completion: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub models: Vec<Compared>,
    /// Every ordered pair: how many times `a`'s price is `b`'s.
    pub ratios: Vec<Ratio>,
}

/// `a / b` to two decimals (half away from zero); None when `b` is free.
pub fn ratio(a: Price, b: Price) -> Option<String> {
    if b.0 == 0 {
        return None;
    }
    let r = Decimal::from(a.0) / Decimal::from(b.0);
    Some(
        r.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
            .to_string(),
    )
}

/// Split `models=a,b,c`, check each exists.
pub fn parse_models(catalog: &Catalog, list: Option<&str>) -> Result<Vec<String>, QueryError> {
    let ids: Vec<String> = list
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        return Err(invalid(
            "models: expected a comma-separated list of model ids",
        ));
    }
    if ids.len() > MAX_MODELS {
        return Err(invalid(format!("models: at most {MAX_MODELS}")));
    }
    for id in &ids {
        if catalog.model(id).is_none() {
            return Err(QueryError::NotFound(format!(
                "models: {id} is not a known model"
            )));
        }
    }
    Ok(ids)
}

pub fn compare(catalog: &Catalog, ids: &[String]) -> Comparison {
    let models: Vec<(Compared, Pricing)> = ids
        .iter()
        .filter_map(|id| catalog.model(id))
        .map(|m| {
            let p = catalog.listed_pricing(m).clone();
            (
                Compared {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    author: m.author.clone(),
                    origin: super::origin_of(catalog, &m.id),
                    context_length: m.context_length,
                    pricing: Prices::of(&p),
                },
                p,
            )
        })
        .collect();
    let mut ratios = Vec::new();
    for (a, pa) in &models {
        for (b, pb) in &models {
            if a.id == b.id {
                continue;
            }
            ratios.push(Ratio {
                a: a.id.clone(),
                b: b.id.clone(),
                prompt: ratio(pa.prompt, pb.prompt),
                completion: ratio(pa.completion, pb.completion),
            });
        }
    }
    Comparison {
        models: models.into_iter().map(|(c, _)| c).collect(),
        ratios,
    }
}

/// Whose usage is repriced.
#[derive(Debug, Clone)]
pub enum Scope {
    Account(String),
    /// The whole gateway's public traffic.
    Gateway,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mix {
    pub requests: i64,
    #[serde(serialize_with = "as_string")]
    pub prompt_tokens: i64,
    #[serde(serialize_with = "as_string")]
    pub cached_tokens: i64,
    #[serde(serialize_with = "as_string")]
    pub completion_tokens: i64,
    #[serde(serialize_with = "as_string")]
    pub reasoning_tokens: i64,
}

impl Mix {
    fn of(s: &Sums) -> Mix {
        Mix {
            requests: s.requests,
            prompt_tokens: s.prompt,
            cached_tokens: s.cached,
            completion_tokens: s.completion,
            reasoning_tokens: s.reasoning,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Used {
    pub model: String,
    pub usage: Mix,
    /// What was charged, in USD.
    pub cost: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alternative {
    pub model: String,
    pub name: String,
    /// The whole period's usage at this model's listed prices, in USD.
    pub cost: String,
    /// This cost divided by the actual cost.
    pub ratio_to_actual: Option<String>,
    /// Actual cost minus this one (negative: it would have cost more).
    pub savings: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WhatIf {
    pub scope: String,
    pub period: &'static str,
    pub start: String,
    pub end: String,
    pub usage: Mix,
    pub actual_cost: String,
    pub by_model: Vec<Used>,
    pub alternatives: Vec<Alternative>,
}

/// Usage `s` at `p`'s prices: uncached prompt, cache reads, completion, and per request.
pub fn reprice(p: &Pricing, s: &Sums) -> Money {
    let u = Usage {
        prompt_tokens: s.prompt.max(0) as u64,
        completion_tokens: s.completion.max(0) as u64,
        cached_tokens: s.cached.max(0) as u64,
        reasoning_tokens: s.reasoning.max(0) as u64,
        ..Default::default()
    };
    // `cost` counts one request; add the others.
    let once = p.cost(&u, 0);
    let extra = p.request.times(s.requests.max(1) as u64 - 1);
    if s.requests == 0 {
        once.saturating_sub(p.request.times(1))
    } else {
        once.saturating_add(extra)
    }
}

pub async fn what_if(
    store: &Store,
    catalog: &Catalog,
    scope: Scope,
    period: Option<&str>,
    end_date: Option<&str>,
    targets: &[String],
) -> Result<WhatIf, QueryError> {
    let period = match period.unwrap_or("week") {
        p @ ("day" | "week" | "month") => Period::parse(p).expect("listed"),
        other => {
            return Err(invalid(format!(
                "period: expected day, week or month, got {other:?}"
            )));
        }
    };
    let end = match end_date.filter(|s| !s.is_empty()) {
        Some(d) => parse_date(d)
            .ok_or_else(|| invalid(format!("end_date: expected YYYY-MM-DD, got {d:?}")))?,
        None => crate::clock::now_ms(),
    };
    let start = period.start(end);
    let next = period.next(start);
    let mut by_model: BTreeMap<String, Sums> = BTreeMap::new();
    match &scope {
        Scope::Account(account) => {
            for b in store
                .account_buckets(account, None, Period::Day, start, next)
                .await?
            {
                by_model.entry(b.model).or_default().add(&b.sums);
            }
        }
        Scope::Gateway => {
            for (model, sums) in store.model_sums(period, start, next).await? {
                by_model.entry(model).or_default().add(&sums);
            }
        }
    }
    let mut total = Sums::default();
    for s in by_model.values() {
        total.add(s);
    }
    let actual = Money(total.cost);
    let alternatives = targets
        .iter()
        .filter_map(|id| catalog.model(id))
        .map(|m| {
            let p = catalog.listed_pricing(m);
            let cost = by_model
                .values()
                .fold(Money::ZERO, |acc, s| acc.saturating_add(reprice(p, s)));
            Alternative {
                model: m.id.clone(),
                name: m.name.clone(),
                cost: cost.to_string(),
                ratio_to_actual: ratio(Price(cost.0), Price(actual.0)),
                savings: actual.saturating_sub(cost).to_string(),
            }
        })
        .collect();
    Ok(WhatIf {
        scope: match scope {
            Scope::Account(a) => format!("account:{a}"),
            Scope::Gateway => "gateway".into(),
        },
        period: period.name(),
        start: date_string(start),
        end: end_date_string(period, start),
        usage: Mix::of(&total),
        actual_cost: actual.to_string(),
        by_model: by_model
            .iter()
            .map(|(m, s)| Used {
                model: m.clone(),
                usage: Mix::of(s),
                cost: Money(s.cost).to_string(),
            })
            .collect(),
        alternatives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_exact_decimals() {
        let opus = Price::per_million_usd("25").unwrap();
        let minimax = Price::per_million_usd("1.1").unwrap();
        assert_eq!(ratio(opus, minimax).as_deref(), Some("22.73"));
        assert_eq!(ratio(minimax, opus).as_deref(), Some("0.04"));
        assert_eq!(ratio(opus, Price::ZERO), None);
    }

    #[test]
    fn repricing_counts_every_token_type_and_request() {
        let p = Pricing {
            prompt: Price::per_million_usd("2").unwrap(),
            completion: Price::per_million_usd("8").unwrap(),
            input_cache_read: Some(Price::per_million_usd("0.5").unwrap()),
            request: Price::per_million_usd("1").unwrap(), // $0.000001 per request
            ..Default::default()
        };
        let s = Sums {
            requests: 3,
            prompt: 1_000_000,
            cached: 400_000,
            completion: 500_000,
            ..Default::default()
        };
        // 600k × $2/M + 400k × $0.5/M + 500k × $8/M + 3 × $0.000001
        assert_eq!(reprice(&p, &s).to_string(), "5.400003");
    }
}
