//! OpenRouter's public datasets, over llmux's traffic (or an imported source):
//! `GET /datasets/rankings-daily` (top 50 models per period plus `other`) and
//! `GET /datasets/app-rankings` (apps by tokens, popular or trending).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::table::as_string;
use super::{QueryError, invalid};
use crate::catalog::Catalog;
use crate::metering::rollup::{Period, add_days, date_string, parse_date};
use crate::storage::{Store, TokensBy};

/// Models listed per period before the rest is summed into `other`.
pub const TOP_MODELS: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub as_of: String,
    pub start_date: String,
    pub end_date: String,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct DailyRow {
    pub date: String,
    pub model_permaslug: String,
    #[serde(serialize_with = "as_string")]
    pub total_tokens: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Daily {
    pub data: Vec<DailyRow>,
    pub meta: Meta,
}

/// The window: `end_date` defaults to the last completed UTC day, `start_date` to 30 days
/// before it.
fn window(start_date: Option<&str>, end_date: Option<&str>) -> Result<(i64, i64), QueryError> {
    let day = |name: &str, v: &str| {
        parse_date(v).ok_or_else(|| invalid(format!("{name}: expected YYYY-MM-DD, got {v:?}")))
    };
    let end = match end_date.filter(|s| !s.is_empty()) {
        Some(d) => day("end_date", d)?,
        None => Period::Day.start(crate::clock::now_ms()) - crate::clock::DAY_MS,
    };
    let start = match start_date.filter(|s| !s.is_empty()) {
        Some(d) => day("start_date", d)?,
        None => add_days(end, -30),
    };
    if start > end {
        return Err(invalid("start_date is after end_date"));
    }
    if end - start > 3 * 366 * crate::clock::DAY_MS {
        return Err(invalid("the window may span at most three years"));
    }
    Ok((start, end))
}

/// The permaslug a ranked model id is published under: the catalog's dated slug, keeping a
/// `:variant`.
pub fn permaslug(catalog: &Catalog, model: &str) -> String {
    let (base, variant) = model
        .split_once(':')
        .map_or((model, None), |(b, v)| (b, Some(v)));
    let slug = catalog
        .model(model)
        .or_else(|| catalog.model(base))
        .map_or(base, |m| m.canonical_slug.as_str());
    match variant {
        Some(v) => format!("{slug}:{v}"),
        None => slug.to_string(),
    }
}

pub async fn rankings_daily(
    store: &Store,
    catalog: &Catalog,
    start_date: Option<&str>,
    end_date: Option<&str>,
    period: Option<&str>,
    source: Option<&str>,
) -> Result<Daily, QueryError> {
    let period = match period.unwrap_or("day") {
        p @ ("day" | "week" | "month") => Period::parse(p).expect("listed"),
        other => {
            return Err(invalid(format!(
                "period: expected day, week or month, got {other:?}"
            )));
        }
    };
    let (start, end) = window(start_date, end_date)?;
    let from = period.start(start);
    let to = period.next(period.start(end));
    // Per bucket: the top models (permaslug, tokens) and the bucket's total.
    let mut buckets: BTreeMap<i64, (Vec<(String, i64)>, i64)> = BTreeMap::new();
    match source.filter(|s| !s.is_empty() && *s != super::table::OWN_SOURCE) {
        Some(s) => {
            super::table::latest_day(store, Some(s)).await?;
            let mut per: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
            for r in store.market_rows(s, from, to).await? {
                *per.entry(period.start(r.day))
                    .or_default()
                    .entry(r.permaslug)
                    .or_default() += r.tokens;
            }
            for (start, models) in per {
                let total = models.values().sum();
                // An imported `other` row is folded back into the rest.
                let mut v: Vec<(String, i64)> = models
                    .into_iter()
                    .filter(|(p, t)| *t > 0 && p != "other")
                    .collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                v.truncate(TOP_MODELS);
                buckets.insert(start, (v, total));
            }
        }
        None => {
            // Catalog variants can share a permaslug: merged before listing.
            let mut per: BTreeMap<i64, (BTreeMap<String, i64>, i64)> = BTreeMap::new();
            for (start, model, tokens, total) in store
                .top_models(period, from, to, TOP_MODELS as i64)
                .await?
            {
                let b = per.entry(start).or_insert_with(|| (BTreeMap::new(), total));
                *b.0.entry(permaslug(catalog, &model)).or_default() += tokens;
            }
            for (start, (models, total)) in per {
                let mut v: Vec<(String, i64)> = models.into_iter().collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                buckets.insert(start, (v, total));
            }
        }
    }
    let mut data = Vec::new();
    for (start, (models, total)) in buckets {
        let date = date_string(start);
        let listed: i64 = models.iter().map(|(_, t)| t).sum();
        for (p, t) in models {
            data.push(DailyRow {
                date: date.clone(),
                model_permaslug: p,
                total_tokens: t,
            });
        }
        if total > listed {
            data.push(DailyRow {
                date: date.clone(),
                model_permaslug: "other".into(),
                total_tokens: total - listed,
            });
        }
    }
    Ok(Daily {
        data,
        meta: Meta {
            as_of: crate::clock::iso8601(crate::clock::now_ms()),
            start_date: date_string(start),
            end_date: date_string(end),
            version: "v1",
        },
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct AppRow {
    pub app_id: i64,
    pub app_name: String,
    /// The app's identity (its `HTTP-Referer`, else its title).
    pub app: String,
    pub rank: usize,
    pub total_requests: i64,
    #[serde(serialize_with = "as_string")]
    pub total_tokens: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Apps {
    pub data: Vec<AppRow>,
    pub meta: Meta,
}

/// A stable numeric id for an app (the same on every node and after a rebuild), below 2^53
/// so JavaScript clients read it exactly.
pub fn app_id(app: &str) -> i64 {
    let h = Sha256::digest(app.as_bytes());
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&h[..6]);
    i64::from_be_bytes(b) & ((1 << 53) - 1)
}

pub async fn app_rankings(
    store: &Store,
    sort: Option<&str>,
    start_date: Option<&str>,
    end_date: Option<&str>,
    limit: Option<&str>,
    offset: Option<&str>,
) -> Result<Apps, QueryError> {
    let trending = match sort.unwrap_or("popular") {
        "popular" => false,
        "trending" => true,
        other => {
            return Err(invalid(format!(
                "sort: expected popular or trending, got {other:?}"
            )));
        }
    };
    let limit = match limit {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| invalid("limit: expected a whole number from 1 to 100"))?,
    };
    let offset = match offset {
        None => 0,
        Some(o) => o
            .parse::<usize>()
            .map_err(|_| invalid("offset: expected a whole number"))?,
    };
    let (start, end) = window(start_date, end_date)?;
    let next = add_days(end, 1);
    let len = next - start;
    // Trending compares the window with the average of the three windows before it.
    let from = if trending { start - 3 * len } else { start };
    let window: BTreeMap<String, (i64, i64)> = store
        .totals_by(TokensBy::App, Period::Day, start, next)
        .await?
        .into_iter()
        .map(|(app, tokens, requests)| (app, (tokens, requests)))
        .collect();
    let before: BTreeMap<String, i64> = if trending {
        store
            .totals_by(TokensBy::App, Period::Day, from, start)
            .await?
            .into_iter()
            .map(|(app, tokens, _)| (app, tokens))
            .collect()
    } else {
        BTreeMap::new()
    };
    let titles: BTreeMap<String, String> = store
        .apps()
        .await?
        .into_iter()
        .filter_map(|a| a.title.map(|t| (a.app, t)))
        .collect();
    let mut ranked: Vec<(String, i64, i64, i128)> = window
        .into_iter()
        .map(|(app, (tokens, requests))| {
            // Excess growth, times three to stay whole: 3·window − (sum of the 3 before).
            let excess = 3 * tokens as i128 - before.get(&app).copied().unwrap_or(0) as i128;
            (app, tokens, requests, excess)
        })
        .filter(|r| r.1 > 0 && (!trending || r.3 > 0))
        .collect();
    if trending {
        ranked.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)));
    } else {
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    let data = ranked
        .into_iter()
        .enumerate()
        .skip(offset)
        .take(limit)
        .map(|(i, (app, tokens, requests, _))| AppRow {
            app_id: app_id(&app),
            app_name: titles.get(&app).cloned().unwrap_or_else(|| app.clone()),
            app,
            rank: i + 1,
            total_requests: requests,
            total_tokens: tokens,
        })
        .collect();
    Ok(Apps {
        data,
        meta: Meta {
            as_of: crate::clock::iso8601(crate::clock::now_ms()),
            start_date: date_string(start),
            end_date: date_string(end),
            version: "v1",
        },
    })
}
