//! The rankings table: tokens (prompt + completion) per group and period over a window of
//! periods, with each group's share, rank and change period over period and across the window.
//! The same computation serves llmux's own traffic and imported market sources.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{
    QueryError, author_of, change_hundredths, country_name, hundredths_f64, invalid, origin_of,
    percent_hundredths,
};
use crate::catalog::Catalog;
use crate::metering::rollup::{Period, date_string, end_date_string, parse_date};
use crate::storage::{Store, TokensBy};

/// The source name of llmux's own traffic.
pub const OWN_SOURCE: &str = "llmux";

/// Most periods one query may span.
pub const MAX_PERIODS: usize = 156;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Model,
    Author,
    Origin,
    Provider,
    App,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        Some(match s {
            "model" => By::Model,
            "author" => By::Author,
            "origin" => By::Origin,
            "provider" => By::Provider,
            "app" => By::App,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            By::Model => "model",
            By::Author => "author",
            By::Origin => "origin",
            By::Provider => "provider",
            By::App => "app",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub period: Period,
    pub by: By,
    /// Periods in the window, ending with the one holding `end`.
    pub periods: usize,
    /// A day in the last period; None: the latest day with data in the source.
    pub end: Option<i64>,
    /// An imported market source; None: llmux's own traffic.
    pub source: Option<String>,
    /// Groups returned at most (the rest still count in totals and shares).
    pub limit: Option<usize>,
}

impl Query {
    /// From query-string values (as the API and CLI take them).
    pub fn parse(
        period: Option<&str>,
        by: Option<&str>,
        periods: Option<&str>,
        end_date: Option<&str>,
        source: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Query, QueryError> {
        let period = match period.unwrap_or("week") {
            p @ ("day" | "week" | "month") => Period::parse(p).expect("listed"),
            other => {
                return Err(invalid(format!(
                    "period: expected day, week or month, got {other:?}"
                )));
            }
        };
        let by = match by {
            None => By::Model,
            Some(b) => By::parse(b).ok_or_else(|| {
                invalid(format!(
                    "by: expected model, author, origin, provider or app, got {b:?}"
                ))
            })?,
        };
        let periods = match periods {
            None => 4,
            Some(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PERIODS).contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "weeks: expected a whole number from 1 to {MAX_PERIODS}"
                    ))
                })?,
        };
        let end = match end_date {
            None | Some("") => None,
            Some(d) => Some(
                parse_date(d)
                    .ok_or_else(|| invalid(format!("end_date: expected YYYY-MM-DD, got {d:?}")))?,
            ),
        };
        let source = source
            .filter(|s| !s.is_empty() && *s != OWN_SOURCE)
            .map(str::to_string);
        if source.is_some() && matches!(by, By::Provider | By::App) {
            return Err(invalid(format!(
                "by={}: imported market data has tokens per model only",
                by.name()
            )));
        }
        let limit = match limit {
            None => None,
            Some(l) => Some(
                l.parse::<usize>()
                    .ok()
                    .filter(|l| *l > 0)
                    .ok_or_else(|| invalid("limit: expected a positive whole number"))?,
            ),
        };
        Ok(Query {
            period,
            by,
            periods,
            end,
            source,
            limit,
        })
    }
}

/// One period of the window.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodInfo {
    pub start: String,
    pub end: String,
    #[serde(serialize_with = "as_string")]
    pub total_tokens: i64,
}

/// One group in one period.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub start: String,
    #[serde(serialize_with = "as_string")]
    pub tokens: i64,
    /// Percent of the period's total.
    #[serde(serialize_with = "as_percent")]
    pub share: Option<i64>,
    /// Position in the period (None without tokens).
    pub rank: Option<usize>,
    /// Percent change from the period before.
    #[serde(serialize_with = "as_percent")]
    pub change: Option<i64>,
}

/// One group across the window, described by its last period.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub key: String,
    pub name: String,
    pub rank: Option<usize>,
    #[serde(serialize_with = "as_string")]
    pub tokens: i64,
    #[serde(serialize_with = "as_percent")]
    pub share: Option<i64>,
    /// Percent change of the last period against the one before it.
    #[serde(serialize_with = "as_percent")]
    pub change: Option<i64>,
    /// Percent change of the last period against the first of the window.
    #[serde(serialize_with = "as_percent")]
    pub change_window: Option<i64>,
    /// Tokens over the whole window, and their share of the window's total.
    #[serde(serialize_with = "as_string")]
    pub window_tokens: i64,
    #[serde(serialize_with = "as_percent")]
    pub window_share: Option<i64>,
    pub series: Vec<Cell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rankings {
    pub source: String,
    pub period: &'static str,
    pub by: &'static str,
    pub periods: Vec<PeriodInfo>,
    #[serde(serialize_with = "as_string")]
    pub window_tokens: i64,
    pub groups: Vec<Group>,
}

pub fn as_string<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub fn as_percent<S: serde::Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(h) => s.serialize_f64(hundredths_f64(*h)),
        None => s.serialize_none(),
    }
}

/// The group a model falls in, and its display name.
pub fn group_of(catalog: &Catalog, by: By, model: &str) -> String {
    match by {
        By::Model => model.to_string(),
        By::Author => author_of(model).to_string(),
        By::Origin => origin_of(catalog, model),
        By::Provider | By::App => model.to_string(),
    }
}

pub fn group_name(
    catalog: &Catalog,
    by: By,
    key: &str,
    app_titles: &HashMap<String, String>,
) -> String {
    match by {
        By::Model => {
            let (base, variant) = key
                .split_once(':')
                .map_or((key, None), |(b, v)| (b, Some(v)));
            match (catalog.model(key).or_else(|| catalog.model(base)), variant) {
                (Some(m), _) if m.id == key => m.name.clone(),
                (Some(m), Some(v)) => format!("{} ({v})", m.name),
                _ => key.to_string(),
            }
        }
        By::Author => catalog
            .author(key)
            .map_or_else(|| key.to_string(), |a| a.name.clone()),
        By::Origin => country_name(key).to_string(),
        By::Provider => catalog
            .provider(key)
            .map_or_else(|| key.to_string(), |p| p.name.clone()),
        By::App => app_titles
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_string()),
    }
}

/// The latest day with data in a source (None: no data at all).
pub async fn latest_day(store: &Store, source: Option<&str>) -> Result<Option<i64>, QueryError> {
    match source {
        None => Ok(store.latest_model_bucket(Period::Day).await?),
        Some(s) => {
            let sources = store.market_sources().await?;
            match sources.get(s) {
                Some((_, last)) => Ok(Some(*last)),
                None => Err(QueryError::NotFound(format!(
                    "no market source named {s:?} (import one with `llmux rankings import FILE --source {s}`)"
                ))),
            }
        }
    }
}

/// Tokens per (period start, key) over `[from, to)`, read from the rollups or the market
/// source. Keys are apps or providers for those groupings, else models (grouped later).
async fn load(
    store: &Store,
    q: &Query,
    from: i64,
    to: i64,
) -> Result<(BTreeMap<(i64, String), i64>, HashMap<String, String>), QueryError> {
    let mut cells: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let mut titles = HashMap::new();
    match (&q.source, q.by) {
        (Some(source), _) => {
            for r in store.market_rows(source, from, to).await? {
                *cells.entry((q.period.start(r.day), r.model)).or_default() += r.tokens;
            }
        }
        (None, By::App) => {
            for (start, app, tokens) in store.tokens_by(TokensBy::App, q.period, from, to).await? {
                *cells.entry((start, app)).or_default() += tokens;
            }
            for a in store.apps().await? {
                if let Some(t) = a.title {
                    titles.insert(a.app, t);
                }
            }
        }
        (None, By::Provider) => {
            for (start, provider, tokens) in store
                .tokens_by(TokensBy::Provider, q.period, from, to)
                .await?
            {
                let key = if provider.is_empty() {
                    "unknown".to_string()
                } else {
                    provider
                };
                *cells.entry((start, key)).or_default() += tokens;
            }
        }
        (None, _) => {
            for (start, model, tokens) in
                store.tokens_by(TokensBy::Model, q.period, from, to).await?
            {
                *cells.entry((start, model)).or_default() += tokens;
            }
        }
    }
    Ok((cells, titles))
}

/// Rank a period's groups: tokens descending, then key; groups without tokens get no rank.
fn ranks(period: &BTreeMap<&str, i64>) -> HashMap<String, usize> {
    let mut v: Vec<(&str, i64)> = period
        .iter()
        .filter(|(_, t)| **t > 0)
        .map(|(k, t)| (*k, *t))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .enumerate()
        .map(|(i, (k, _))| (k.to_string(), i + 1))
        .collect()
}

pub async fn rankings(store: &Store, catalog: &Catalog, q: &Query) -> Result<Rankings, QueryError> {
    let mut r = rankings_many(store, catalog, q, &[q.by]).await?;
    Ok(r.remove(0))
}

/// Several groupings of the same window from one read: `bys` are model-based (model, author,
/// origin), or `q.by` itself.
pub async fn rankings_many(
    store: &Store,
    catalog: &Catalog,
    q: &Query,
    bys: &[By],
) -> Result<Vec<Rankings>, QueryError> {
    let end = match q.end {
        Some(e) => e,
        None => latest_day(store, q.source.as_deref())
            .await?
            .unwrap_or_else(crate::clock::now_ms),
    };
    let last = q.period.start(end);
    let mut starts = vec![last];
    for _ in 1..q.periods {
        let prev = q.period.prev(*starts.last().expect("non-empty"));
        starts.push(prev);
    }
    starts.reverse();
    let before_window = q.period.prev(starts[0]);
    let (raw, titles) = load(store, q, before_window, q.period.next(last)).await?;
    let mut out = Vec::with_capacity(bys.len());
    for &by in bys {
        let cells: BTreeMap<(i64, String), i64> = match by {
            By::Author | By::Origin => {
                let mut c = BTreeMap::new();
                for ((start, model), tokens) in &raw {
                    *c.entry((*start, group_of(catalog, by, model))).or_default() += tokens;
                }
                c
            }
            _ => raw.clone(),
        };
        out.push(build(
            catalog,
            q,
            by,
            &starts,
            before_window,
            &cells,
            &titles,
        ));
    }
    Ok(out)
}

/// The rankings of one grouping, from its tokens per (period start, group).
fn build(
    catalog: &Catalog,
    q: &Query,
    by: By,
    starts: &[i64],
    before_window: i64,
    cells: &BTreeMap<(i64, String), i64>,
    titles: &HashMap<String, String>,
) -> Rankings {
    // tokens[period][group], including the period before the window (for the first change).
    let mut all_starts = vec![before_window];
    all_starts.extend(starts);
    let mut by_period: Vec<BTreeMap<&str, i64>> = vec![BTreeMap::new(); all_starts.len()];
    let index: HashMap<i64, usize> = all_starts
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, i))
        .collect();
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for ((start, key), tokens) in cells {
        if let Some(&i) = index.get(start) {
            by_period[i].insert(key.as_str(), *tokens);
            if i > 0 && *tokens != 0 {
                keys.insert(key.as_str());
            }
        }
    }
    let totals: Vec<i64> = by_period.iter().map(|p| p.values().sum()).collect();
    let period_ranks: Vec<HashMap<String, usize>> = by_period.iter().map(ranks).collect();
    let window_total: i64 = totals[1..].iter().sum();

    let mut groups: Vec<Group> = keys
        .iter()
        .map(|key| {
            let tokens_at = |i: usize| by_period[i].get(key).copied().unwrap_or(0);
            let series: Vec<Cell> = (1..all_starts.len())
                .map(|i| {
                    let t = tokens_at(i);
                    Cell {
                        start: date_string(all_starts[i]),
                        tokens: t,
                        share: percent_hundredths(t as i128, totals[i] as i128),
                        rank: period_ranks[i].get(*key).copied(),
                        change: change_hundredths(tokens_at(i - 1), t),
                    }
                })
                .collect();
            let n = all_starts.len() - 1;
            let last_cell = series.last().expect("at least one period");
            let window_tokens: i64 = (1..=n).map(tokens_at).sum();
            Group {
                key: key.to_string(),
                name: group_name(catalog, by, key, titles),
                rank: last_cell.rank,
                tokens: last_cell.tokens,
                share: last_cell.share,
                change: last_cell.change,
                change_window: if n > 1 {
                    change_hundredths(tokens_at(1), tokens_at(n))
                } else {
                    None
                },
                window_tokens,
                window_share: percent_hundredths(window_tokens as i128, window_total as i128),
                series,
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        b.tokens
            .cmp(&a.tokens)
            .then(b.window_tokens.cmp(&a.window_tokens))
            .then(a.key.cmp(&b.key))
    });
    if let Some(limit) = q.limit {
        groups.truncate(limit);
    }
    Rankings {
        source: q.source.clone().unwrap_or_else(|| OWN_SOURCE.to_string()),
        period: q.period.name(),
        by: by.name(),
        periods: starts
            .iter()
            .enumerate()
            .map(|(i, s)| PeriodInfo {
                start: date_string(*s),
                end: end_date_string(q.period, *s),
                total_tokens: totals[i + 1],
            })
            .collect(),
        window_tokens: window_total,
        groups,
    }
}
