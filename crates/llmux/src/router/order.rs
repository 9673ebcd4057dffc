//! The endpoint level: in which order a model's eligible endpoints are tried.
//!
//! Default (OpenRouter's documented strategy): endpoints without significant recent failures
//! first, chosen at random weighted by the inverse square of their blended price
//! ((3 × prompt + completion) / 4 per token: a typical three-to-one input/output mix), each
//! next one weighted among the rest; unstable endpoints after them, cheapest first; endpoints
//! whose circuit is open only if nothing else is left. `sort` (or `:nitro` / `:floor`) and
//! `order` replace the random choice by a fixed order. A circuit ready to be probed puts its
//! endpoint first for one request; a sticky conversation puts its endpoint first.

use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

use super::health::{Circuit, Health, Snapshot};
use super::preferences::{Preferences, SortBy};
use crate::catalog::{Endpoint, Pricing};

/// Picodollars per token for a typical 3:1 input/output mix.
pub fn blended_price(p: &Pricing) -> f64 {
    (3.0 * p.prompt.0 as f64 + p.completion.0 as f64) / 4.0
}

/// One endpoint as the routing decision saw it (for `X-OpenRouter-Metadata`).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointInfo {
    pub model: String,
    pub provider: String,
    /// Blended USD per million tokens (a decimal string in the metadata, formatted only when a
    /// client asks for it).
    #[serde(serialize_with = "usd_per_million")]
    pub blended_price: f64,
    /// Its chance to be picked first, under the weighted random choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    pub stable: bool,
    pub circuit: Circuit,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sticky: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub byok: bool,
    pub uptime_30m: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub throughput_p50: Option<f64>,
}

fn usd_per_million<S: serde::Serializer>(usd: &f64, s: S) -> Result<S::Ok, S::Error> {
    match rust_decimal::Decimal::from_f64_retain(*usd) {
        Some(d) => s.collect_str(&d.round_dp(6).normalize()),
        None => s.serialize_str(""),
    }
}

pub struct Ordered {
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Each endpoint as the router saw it, in order; empty unless asked for.
    pub info: Vec<EndpointInfo>,
    pub strategy: &'static str,
}

struct Item {
    e: Arc<Endpoint>,
    snap: Snapshot,
    price: f64,
    weight: Option<f64>,
    probe: bool,
    sticky: bool,
}

fn metric(i: &Item, by: SortBy) -> f64 {
    match by {
        SortBy::Price => i.price,
        // Unknown figures sort first, so new endpoints get measured.
        SortBy::Throughput => -i.snap.throughput_30m.map_or(f64::INFINITY, |p| p.p50),
        SortBy::Latency => i.snap.latency_30m.map_or(f64::NEG_INFINITY, |p| p.p50),
    }
}

fn meets_preferences(i: &Item, prefs: &Preferences) -> bool {
    // Without figures yet an endpoint is given the benefit of the doubt.
    let fast_enough = match (prefs.preferred_min_throughput, i.snap.throughput_30m) {
        (Some(min), Some(t)) => min.pairs(&t).all(|(min, got)| got >= min),
        _ => true,
    };
    let quick_enough = match (prefs.preferred_max_latency, i.snap.latency_30m) {
        (Some(max_secs), Some(l)) => max_secs.pairs(&l).all(|(max, ms)| ms <= max * 1000.0),
        _ => true,
    };
    fast_enough && quick_enough
}

/// Weighted random order (without replacement), by 1 / price².
fn weighted(items: &mut Vec<Item>, rng: &mut StdRng) -> Vec<Item> {
    let w = |i: &Item| 1.0 / i.price.max(1e-9).powi(2);
    let total: f64 = items.iter().map(w).sum();
    for i in items.iter_mut() {
        i.weight = Some(w(i) / total);
    }
    let mut out = Vec::with_capacity(items.len());
    while !items.is_empty() {
        let total: f64 = items.iter().map(w).sum();
        let mut r = rng.random::<f64>() * total;
        let mut pick = items.len() - 1;
        for (n, i) in items.iter().enumerate() {
            r -= w(i);
            if r <= 0.0 {
                pick = n;
                break;
            }
        }
        out.push(items.remove(pick));
    }
    out
}

/// Order `eps` (all eligible) for one model; `with_info`: describe each endpoint too.
#[allow(clippy::too_many_arguments)]
pub fn order(
    model: &str,
    eps: Vec<Arc<Endpoint>>,
    sort: Option<SortBy>,
    prefs: &Preferences,
    health: &Health,
    rng: &mut StdRng,
    sticky: Option<&str>,
    with_info: bool,
) -> Ordered {
    let now = crate::clock::now_ms();
    let mut probe = Vec::new();
    let mut stable = Vec::new();
    let mut unstable = Vec::new();
    let mut open = Vec::new();
    for e in eps {
        let h = health.of(&e.provider.slug, model);
        let snap = h.snapshot(now, health.settings());
        let mut item = Item {
            price: blended_price(&e.pricing),
            sticky: sticky == Some(e.provider.slug.as_str()),
            e,
            snap,
            weight: None,
            probe: false,
        };
        match item.snap.circuit {
            Circuit::Closed if item.snap.stable => stable.push(item),
            Circuit::Closed => unstable.push(item),
            Circuit::HalfOpen if h.admit(now) => {
                item.probe = true;
                probe.push(item);
            }
            Circuit::HalfOpen | Circuit::Open => open.push(item),
        }
    }
    let by_price = |a: &Item, b: &Item| a.price.total_cmp(&b.price);
    let strategy;
    let mut ordered: Vec<Item> = probe;
    if !prefs.order.is_empty() {
        strategy = "order";
        let pos = |i: &Item| {
            let slug = i.e.provider.slug.to_ascii_lowercase();
            let name = i.e.provider.name.to_ascii_lowercase();
            prefs
                .order
                .iter()
                .position(|x| *x == slug || *x == name)
                .unwrap_or(usize::MAX)
        };
        let mut rest: Vec<Item> = stable.into_iter().chain(unstable).collect();
        rest.sort_by(|a, b| pos(a).cmp(&pos(b)).then(by_price(a, b)));
        ordered.extend(rest);
    } else if let Some(by) = sort {
        strategy = match by {
            SortBy::Price => "sort:price",
            SortBy::Throughput => "sort:throughput",
            SortBy::Latency => "sort:latency",
        };
        stable.sort_by(|a, b| metric(a, by).total_cmp(&metric(b, by)));
        unstable.sort_by(|a, b| metric(a, by).total_cmp(&metric(b, by)));
        ordered.extend(stable);
        ordered.extend(unstable);
    } else {
        strategy = "weighted_random_by_price";
        let picked = weighted(&mut stable, rng);
        // Soft preferences: endpoints meeting them keep their order ahead of the others.
        let (meets, misses): (Vec<Item>, Vec<Item>) = picked
            .into_iter()
            .partition(|i| meets_preferences(i, prefs));
        ordered.extend(meets);
        ordered.extend(misses);
        unstable.sort_by(by_price);
        ordered.extend(unstable);
    }
    if let Some(pos) = ordered.iter().position(|i| i.sticky && i.snap.stable) {
        let item = ordered.remove(pos);
        let at = ordered.iter().take_while(|i| i.probe).count();
        ordered.insert(at, item);
    }
    if ordered.is_empty() {
        open.sort_by(by_price);
        ordered = open;
    }
    if !prefs.allow_fallbacks && prefs.order.is_empty() {
        ordered.truncate(1);
    }
    let described = if with_info { &ordered[..] } else { &[] };
    let info = described
        .iter()
        .map(|i| EndpointInfo {
            model: model.to_string(),
            provider: i.e.provider.slug.clone(),
            blended_price: i.price / 1e6,
            weight: i.weight,
            stable: i.snap.stable,
            circuit: i.snap.circuit,
            probe: i.probe,
            sticky: i.sticky,
            byok: false,
            uptime_30m: i.snap.uptime_30m,
            latency_p50_ms: i.snap.latency_30m.map(|p| p.p50),
            throughput_p50: i.snap.throughput_30m.map(|p| p.p50),
        })
        .collect();
    Ordered {
        endpoints: ordered.into_iter().map(|i| i.e).collect(),
        info,
        strategy,
    }
}
