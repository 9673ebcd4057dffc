//! Rollups: generation records summed into time buckets (hour, day, week from Monday UTC,
//! month) by model and provider, by app, and by account and key. The writer folds each batch
//! it inserts into [`Deltas`] and adds them in the same transaction, so the rollups always
//! equal a recount of the records; `llmux rollups rebuild` folds every record again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use super::GenerationRecord;
use crate::clock::DAY_MS;

const MS_PER_HOUR: i64 = 3_600_000;

/// A bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Hour,
    Day,
    /// Monday to Sunday, UTC.
    Week,
    Month,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        Some(match s {
            "hour" => Period::Hour,
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            _ => return None,
        })
    }

    /// The first millisecond of the bucket holding `ms`.
    pub fn start(self, ms: i64) -> i64 {
        match self {
            Period::Hour => ms.div_euclid(MS_PER_HOUR) * MS_PER_HOUR,
            Period::Day => ms.div_euclid(DAY_MS) * DAY_MS,
            Period::Week => {
                // Day 0 (1970-01-01) was a Thursday: Mondays are days ≡ 4 (mod 7).
                let day = ms.div_euclid(DAY_MS);
                (day - (day - 4).rem_euclid(7)) * DAY_MS
            }
            Period::Month => {
                let d = date_of(ms);
                month_start(d.year(), d.month())
            }
        }
    }

    /// The first millisecond of the bucket after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Period::Hour => start + MS_PER_HOUR,
            Period::Day => start + DAY_MS,
            Period::Week => start + 7 * DAY_MS,
            Period::Month => {
                let d = date_of(start);
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                month_start(y, m)
            }
        }
    }

    /// The first millisecond of the bucket before the one starting at `start`.
    pub fn prev(self, start: i64) -> i64 {
        match self {
            Period::Hour => start - MS_PER_HOUR,
            Period::Day => start - DAY_MS,
            Period::Week => start - 7 * DAY_MS,
            Period::Month => Period::Month.start(start - 1),
        }
    }
}

fn date_of(ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .date_naive()
}

fn month_start(year: i32, month: u32) -> i64 {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map_or(0, |d| d.timestamp_millis())
}

/// `YYYY-MM-DD` of a UTC millisecond.
pub fn date_string(ms: i64) -> String {
    date_of(ms).format("%Y-%m-%d").to_string()
}

/// The UTC midnight starting `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<i64> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// The last day of a bucket, as `YYYY-MM-DD`.
pub fn end_date_string(period: Period, start: i64) -> String {
    date_string(period.next(start) - 1)
}

/// Days between two day starts.
pub fn days_between(from: i64, to: i64) -> i64 {
    (to - from).div_euclid(DAY_MS)
}

/// `ms` plus whole days.
pub fn add_days(ms: i64, days: i64) -> i64 {
    ms + Duration::days(days).num_milliseconds()
}

/// Summed figures of a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub requests: i64,
    pub prompt: i64,
    pub completion: i64,
    pub reasoning: i64,
    pub cached: i64,
    /// Picodollars charged.
    pub cost: i64,
    /// Picodollars billed by providers directly (BYOK).
    pub byok_usage: i64,
}

impl Sums {
    /// Tokens as rankings count them: prompt plus completion.
    pub fn tokens(&self) -> i64 {
        self.prompt.saturating_add(self.completion)
    }

    pub fn add(&mut self, o: &Sums) {
        self.requests += o.requests;
        self.prompt += o.prompt;
        self.completion += o.completion;
        self.reasoning += o.reasoning;
        self.cached += o.cached;
        self.cost += o.cost;
        self.byok_usage += o.byok_usage;
    }

    fn of(r: &GenerationRecord) -> Sums {
        let t = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Sums {
            requests: 1,
            prompt: t(r.usage.prompt_tokens),
            completion: t(r.usage.completion_tokens),
            reasoning: t(r.usage.reasoning_tokens),
            cached: t(r.usage.cached_tokens),
            cost: r.cost.0,
            byok_usage: r.byok_usage.0,
        }
    }
}

/// Which accounts' traffic stays out of public rankings.
#[derive(Debug, Clone, Default)]
pub struct Privacy {
    pub private_accounts: HashSet<String>,
}

impl Privacy {
    pub fn is_public(&self, r: &GenerationRecord) -> bool {
        r.account_id
            .as_ref()
            .is_none_or(|a| !self.private_accounts.contains(a))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModelKey {
    pub period: Period,
    pub start: i64,
    pub model: Arc<str>,
    pub provider: Arc<str>,
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppKey {
    pub period: Period,
    pub start: i64,
    pub app: Arc<str>,
    pub model: Arc<str>,
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AccountKey {
    pub account_id: Arc<str>,
    pub period: Period,
    pub start: i64,
    pub key_hash: Arc<str>,
    pub model: Arc<str>,
    pub provider: Arc<str>,
}

/// An app as seen in a batch: its latest title, first and last use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSeen {
    pub title: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// What a batch of records adds to the rollups. Keys are ordered, so concurrent writers
/// (several nodes on one PostgreSQL) lock rows in the same order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deltas {
    pub models: BTreeMap<ModelKey, Sums>,
    pub apps: BTreeMap<AppKey, Sums>,
    pub accounts: BTreeMap<AccountKey, Sums>,
    pub apps_seen: BTreeMap<String, AppSeen>,
}

/// Longest app identity kept (referers can be long URLs).
const MAX_APP_LEN: usize = 200;

/// The app a record came from: its `HTTP-Referer`, else its `X-Title`.
pub fn app_of(r: &GenerationRecord) -> Option<&str> {
    fn pick(s: &Option<String>) -> Option<&str> {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| truncate(s, MAX_APP_LEN))
    }
    pick(&r.app_referer).or_else(|| pick(&r.app_title))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The model a record ranks under: the served catalog id, as its own entry when the free
/// variant was asked for (as OpenRouter ranks `:free`). None when no model was resolved.
pub fn ranked_model(r: &GenerationRecord) -> Option<Arc<str>> {
    let model = r.model.as_deref()?;
    let asked_free = r
        .requested_model
        .split(':')
        .skip(1)
        .any(|suffix| suffix == "free");
    Some(if asked_free && !model.ends_with(":free") {
        format!("{model}:free").into()
    } else {
        model.into()
    })
}

const RANKING_PERIODS: [Period; 3] = [Period::Day, Period::Week, Period::Month];
const ACCOUNT_PERIODS: [Period; 2] = [Period::Hour, Period::Day];

impl Deltas {
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && self.accounts.is_empty() && self.apps.is_empty()
    }

    pub fn add(&mut self, r: &GenerationRecord, privacy: &Privacy) {
        let sums = Sums::of(r);
        let at = r.created_at_ms;
        let public = privacy.is_public(r);
        // Each text made once per record and shared by its keys (three periods, three
        // tables): copied into each key, they were 15 allocations a record.
        let model = ranked_model(r);
        let provider: Arc<str> = r.provider.as_deref().unwrap_or_default().into();
        if let Some(model) = &model {
            for period in RANKING_PERIODS {
                let key = ModelKey {
                    period,
                    start: period.start(at),
                    model: model.clone(),
                    provider: provider.clone(),
                    public,
                };
                self.models.entry(key).or_default().add(&sums);
            }
            if let Some(app) = app_of(r) {
                let app_key: Arc<str> = app.into();
                for period in RANKING_PERIODS {
                    let key = AppKey {
                        period,
                        start: period.start(at),
                        app: app_key.clone(),
                        model: model.clone(),
                        public,
                    };
                    self.apps.entry(key).or_default().add(&sums);
                }
                let title = r
                    .app_title
                    .as_deref()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| truncate(t, MAX_APP_LEN).to_string());
                match self.apps_seen.get_mut(app) {
                    None => {
                        let seen = AppSeen {
                            title,
                            first_seen: at,
                            last_seen: at,
                        };
                        self.apps_seen.insert(app.to_string(), seen);
                    }
                    Some(seen) => {
                        seen.first_seen = seen.first_seen.min(at);
                        if at >= seen.last_seen {
                            seen.last_seen = at;
                            if title.is_some() {
                                seen.title = title;
                            }
                        } else if seen.title.is_none() {
                            seen.title = title;
                        }
                    }
                }
            }
        }
        if let Some(account_id) = &r.account_id {
            // Unresolved model names are the client's free text: kept out of the keys.
            let model = model.unwrap_or_else(|| "".into());
            let account_id: Arc<str> = account_id.as_str().into();
            let key_hash: Arc<str> = r.key_hash.as_deref().unwrap_or_default().into();
            for period in ACCOUNT_PERIODS {
                let key = AccountKey {
                    account_id: account_id.clone(),
                    period,
                    start: period.start(at),
                    key_hash: key_hash.clone(),
                    model: model.clone(),
                    provider: provider.clone(),
                };
                self.accounts.entry(key).or_default().add(&sums);
            }
        }
    }

    /// Merge another batch's deltas into these.
    pub fn merge(&mut self, other: Deltas) {
        for (k, v) in other.models {
            self.models.entry(k).or_default().add(&v);
        }
        for (k, v) in other.apps {
            self.apps.entry(k).or_default().add(&v);
        }
        for (k, v) in other.accounts {
            self.accounts.entry(k).or_default().add(&v);
        }
        for (app, seen) in other.apps_seen {
            match self.apps_seen.get_mut(&app) {
                None => {
                    self.apps_seen.insert(app, seen);
                }
                Some(s) => {
                    s.first_seen = s.first_seen.min(seen.first_seen);
                    if seen.last_seen >= s.last_seen {
                        s.last_seen = seen.last_seen;
                        if seen.title.is_some() {
                            s.title = seen.title;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use llmux_protocol::canonical::Usage;

    #[test]
    fn buckets() {
        let at = parse_date("2026-02-11").unwrap() + 5 * MS_PER_HOUR + 7; // a Wednesday
        assert_eq!(date_string(Period::Week.start(at)), "2026-02-09");
        assert_eq!(
            end_date_string(Period::Week, Period::Week.start(at)),
            "2026-02-15"
        );
        assert_eq!(date_string(Period::Month.start(at)), "2026-02-01");
        assert_eq!(
            date_string(Period::Month.next(Period::Month.start(at))),
            "2026-03-01"
        );
        assert_eq!(
            end_date_string(Period::Month, Period::Month.start(at)),
            "2026-02-28"
        );
        let dec = parse_date("2025-12-31").unwrap();
        assert_eq!(
            date_string(Period::Month.next(Period::Month.start(dec))),
            "2026-01-01"
        );
        assert_eq!(
            date_string(Period::Month.prev(Period::Month.start(at))),
            "2026-01-01"
        );
        assert_eq!(
            Period::Hour.start(at),
            parse_date("2026-02-11").unwrap() + 5 * MS_PER_HOUR
        );
        // A Monday starts its own week; a Sunday belongs to the week before.
        let monday = parse_date("2026-02-16").unwrap();
        assert_eq!(Period::Week.start(monday), monday);
        assert_eq!(
            Period::Week.start(monday - 1),
            parse_date("2026-02-09").unwrap()
        );
    }

    fn record(
        model: &str,
        requested: &str,
        account: &str,
        at: i64,
        prompt: u64,
    ) -> GenerationRecord {
        GenerationRecord {
            id: format!("gen-{at}-{model}"),
            created_at_ms: at,
            account_id: Some(account.into()),
            key_hash: Some("k".into()),
            requested_model: requested.into(),
            model: Some(model.into()),
            provider: Some("p".into()),
            usage: Usage {
                prompt_tokens: prompt,
                completion_tokens: 2,
                ..Default::default()
            },
            cost: Money(5),
            app_referer: Some("https://app.example/".into()),
            app_title: Some("App".into()),
            ..Default::default()
        }
    }

    #[test]
    fn deltas_sum_and_respect_privacy() {
        let at = parse_date("2026-02-11").unwrap();
        let privacy = Privacy {
            private_accounts: ["secret".to_string()].into_iter().collect(),
        };
        let mut d = Deltas::default();
        d.add(&record("a/m", "a/m", "acct", at, 10), &privacy);
        d.add(&record("a/m", "a/m:free", "acct", at + 1, 1), &privacy);
        d.add(&record("a/m", "a/m", "secret", at + 2, 100), &privacy);
        let week = |model: &str, public: bool| {
            d.models[&ModelKey {
                period: Period::Week,
                start: Period::Week.start(at),
                model: model.into(),
                provider: "p".into(),
                public,
            }]
        };
        assert_eq!(week("a/m", true).prompt, 10);
        assert_eq!(week("a/m:free", true).tokens(), 3);
        assert_eq!(week("a/m", false).requests, 1);
        assert_eq!(d.models.len(), 3 * 3);
        assert_eq!(d.accounts.len(), 2 * 3);
        assert_eq!(
            d.apps_seen["https://app.example/"].title.as_deref(),
            Some("App")
        );
        let mut split = Deltas::default();
        split.add(&record("a/m", "a/m", "acct", at, 10), &privacy);
        let mut rest = Deltas::default();
        rest.add(&record("a/m", "a/m:free", "acct", at + 1, 1), &privacy);
        rest.add(&record("a/m", "a/m", "secret", at + 2, 100), &privacy);
        split.merge(rest);
        assert_eq!(split, d);
    }
}
