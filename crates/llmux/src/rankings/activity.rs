//! An account's activity: spend, tokens and requests over the last hour, day, month or year,
//! by model or by key, from the account rollups. Serves the `/activity` page, its CSV export
//! and `llmux activity`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::table::as_string;
use super::{QueryError, invalid};
use crate::catalog::Catalog;
use crate::metering::rollup::{Period, Sums};
use crate::money::Money;
use crate::storage::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Hour,
    Day,
    Month,
    Year,
}

impl Range {
    pub fn parse(s: &str) -> Result<Range, QueryError> {
        Ok(match s {
            "1h" | "hour" => Range::Hour,
            "1d" | "day" => Range::Day,
            "1m" | "month" => Range::Month,
            "1y" | "year" => Range::Year,
            other => {
                return Err(invalid(format!(
                    "range: expected 1h, 1d, 1m or 1y, got {other:?}"
                )));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "1d",
            Range::Month => "1m",
            Range::Year => "1y",
        }
    }

    /// The bucket size read, and how many buckets end at now.
    fn buckets(self) -> (Period, i64) {
        match self {
            Range::Hour => (Period::Hour, 1),
            Range::Day => (Period::Hour, 24),
            Range::Month => (Period::Day, 30),
            Range::Year => (Period::Day, 365),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Model,
    Key,
}

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy, QueryError> {
        match s {
            "model" => Ok(GroupBy::Model),
            "key" => Ok(GroupBy::Key),
            other => Err(invalid(format!("by: expected model or key, got {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// USD charged.
    pub spend: String,
    /// USD billed by providers directly (BYOK).
    pub byok_usage: String,
    #[serde(serialize_with = "as_string")]
    pub tokens: i64,
    #[serde(serialize_with = "as_string")]
    pub prompt_tokens: i64,
    #[serde(serialize_with = "as_string")]
    pub completion_tokens: i64,
    #[serde(serialize_with = "as_string")]
    pub reasoning_tokens: i64,
    pub requests: i64,
}

impl Totals {
    fn of(s: &Sums) -> Totals {
        Totals {
            spend: Money(s.cost).to_string(),
            byok_usage: Money(s.byok_usage).to_string(),
            tokens: s.tokens(),
            prompt_tokens: s.prompt,
            completion_tokens: s.completion,
            reasoning_tokens: s.reasoning,
            requests: s.requests,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ActivityGroup {
    pub key: String,
    pub name: String,
    pub totals: Totals,
    /// One entry per bucket, in `Activity::buckets` order.
    #[serde(skip)]
    pub series: Vec<Sums>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub range: &'static str,
    pub bucket: &'static str,
    /// Bucket starts (Unix ms), oldest first.
    pub buckets: Vec<i64>,
    pub totals: Totals,
    pub groups: Vec<ActivityGroup>,
}

/// `account`'s activity (one key's when `key_hash` is given) over `range`, ending now.
pub async fn activity(
    store: &Store,
    catalog: &Catalog,
    account: &str,
    key_hash: Option<&str>,
    range: Range,
    by: GroupBy,
) -> Result<Activity, QueryError> {
    let (period, n) = range.buckets();
    let last = period.start(crate::clock::now_ms());
    let mut buckets = vec![last];
    for _ in 1..n {
        let prev = period.prev(*buckets.last().expect("non-empty"));
        buckets.push(prev);
    }
    buckets.reverse();
    let index: HashMap<i64, usize> = buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let rows = store
        .account_buckets(account, key_hash, period, buckets[0], period.next(last))
        .await?;
    let key_names: HashMap<String, String> = match by {
        GroupBy::Key => store
            .keys(Some(account))
            .await?
            .into_iter()
            .map(|k| (k.hash, k.name))
            .collect(),
        GroupBy::Model => HashMap::new(),
    };
    let mut groups: BTreeMap<String, Vec<Sums>> = BTreeMap::new();
    let mut total = Sums::default();
    for r in rows {
        let Some(&i) = index.get(&r.start) else {
            continue;
        };
        let g = match by {
            GroupBy::Model if r.model.is_empty() => "(no model)".to_string(),
            GroupBy::Model => r.model,
            GroupBy::Key => r.key_hash,
        };
        groups
            .entry(g)
            .or_insert_with(|| vec![Sums::default(); buckets.len()])[i]
            .add(&r.sums);
        total.add(&r.sums);
    }
    let mut groups: Vec<ActivityGroup> = groups
        .into_iter()
        .map(|(key, series)| {
            let mut sum = Sums::default();
            series.iter().for_each(|s| sum.add(s));
            let name = match by {
                GroupBy::Model => catalog
                    .model(&key)
                    .map_or_else(|| key.clone(), |m| m.name.clone()),
                GroupBy::Key => key_names
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| key.chars().take(12).collect()),
            };
            ActivityGroup {
                key,
                name,
                totals: Totals::of(&sum),
                series,
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        let spend = |g: &ActivityGroup| g.series.iter().map(|s| s.cost).sum::<i64>();
        spend(b)
            .cmp(&spend(a))
            .then(b.totals.tokens.cmp(&a.totals.tokens))
            .then(a.key.cmp(&b.key))
    });
    Ok(Activity {
        range: range.name(),
        bucket: period.name(),
        buckets,
        totals: Totals::of(&total),
        groups,
    })
}

/// The activity as CSV: one line per bucket and group with a request.
pub fn csv(a: &Activity) -> String {
    let mut out = String::from(
        "bucket_start,group,name,requests,prompt_tokens,completion_tokens,reasoning_tokens,spend_usd,byok_usage_usd\n",
    );
    let field = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    for (i, start) in a.buckets.iter().enumerate() {
        for g in &a.groups {
            let s = &g.series[i];
            if s.requests == 0 {
                continue;
            }
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                crate::clock::iso8601(*start),
                field(&g.key),
                field(&g.name),
                s.requests,
                s.prompt,
                s.completion,
                s.reasoning,
                Money(s.cost),
                Money(s.byok_usage)
            ));
        }
    }
    out
}
