//! Rollup tables: adding a batch's deltas (in the writer's transaction), reading buckets for
//! rankings and activity, and rebuilding or recounting them from the raw records.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::writer::{Statement, WriteConn};
use super::{Backend, Store, flag, placeholders, statement_chunks};
use crate::metering::rollup::{AccountKey, AppKey, Deltas, ModelKey, Period, Privacy, Sums};

const SUM_COLUMNS: [&str; 6] = [
    "requests",
    "tokens_prompt",
    "tokens_completion",
    "tokens_reasoning",
    "tokens_cached",
    "cost",
];

fn add_sums(table: &str, cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Upsert `rows` into `table`: key columns, then sums added to what is there.
async fn upsert<'a, C: WriteConn, K>(
    conn: &mut C,
    backend: Backend,
    table: &str,
    key_cols: &[&str],
    sum_cols: &[&str],
    rows: &[(&'a K, &'a Sums)],
    bind: impl Fn(Statement<'a>, &'a K, &'a Sums) -> Statement<'a>,
) -> anyhow::Result<()> {
    let cols: Vec<&str> = key_cols.iter().chain(sum_cols).copied().collect();
    for chunk in statement_chunks(rows) {
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
            cols.join(", "),
            placeholders(backend, chunk.len(), cols.len()),
            key_cols.join(", "),
            add_sums(table, sum_cols)
        );
        let mut q = Statement::new(sql);
        for (k, s) in chunk {
            q = bind(q, k, s);
        }
        q.execute(conn).await?;
    }
    Ok(())
}

fn bind_sums<'a>(q: Statement<'a>, s: &Sums) -> Statement<'a> {
    q.int(s.requests)
        .int(s.prompt)
        .int(s.completion)
        .int(s.reasoning)
        .int(s.cached)
        .int(s.cost)
}

/// Each rollup table's key: what one row sums over (the upsert's conflict target, and the
/// order `migrate` copies the table in).
pub(super) const MODEL_KEY: &[&str] = &["period", "start", "model", "provider", "public"];
pub(super) const APP_KEY: &[&str] = &["period", "start", "app", "model", "public"];
pub(super) const ACCOUNT_KEY: &[&str] = &[
    "account_id",
    "period",
    "start",
    "key_hash",
    "model",
    "provider",
];

/// Add a batch's deltas inside the caller's transaction (`conn`).
pub(super) async fn apply<C: WriteConn>(
    conn: &mut C,
    backend: Backend,
    d: &Deltas,
) -> anyhow::Result<()> {
    let models: Vec<(&ModelKey, &Sums)> = d.models.iter().collect();
    upsert(
        conn,
        backend,
        "rollup_models",
        MODEL_KEY,
        &SUM_COLUMNS,
        &models,
        |q, k, s| {
            bind_sums(
                q.text(k.period.name())
                    .int(k.start)
                    .text(&*k.model)
                    .text(&*k.provider)
                    .int(flag(k.public)),
                s,
            )
        },
    )
    .await?;
    let apps: Vec<(&AppKey, &Sums)> = d.apps.iter().collect();
    upsert(
        conn,
        backend,
        "rollup_apps",
        APP_KEY,
        &SUM_COLUMNS,
        &apps,
        |q, k, s| {
            bind_sums(
                q.text(k.period.name())
                    .int(k.start)
                    .text(&*k.app)
                    .text(&*k.model)
                    .int(flag(k.public)),
                s,
            )
        },
    )
    .await?;
    let accounts: Vec<(&AccountKey, &Sums)> = d.accounts.iter().collect();
    let mut account_sums: Vec<&str> = SUM_COLUMNS.to_vec();
    account_sums.push("byok_usage");
    upsert(
        conn,
        backend,
        "rollup_accounts",
        ACCOUNT_KEY,
        &account_sums,
        &accounts,
        |q, k, s| {
            bind_sums(
                q.text(&*k.account_id)
                    .text(k.period.name())
                    .int(k.start)
                    .text(&*k.key_hash)
                    .text(&*k.model)
                    .text(&*k.provider),
                s,
            )
            .int(s.byok_usage)
        },
    )
    .await?;
    for (app, seen) in &d.apps_seen {
        Statement::new(
            "INSERT INTO apps (app, title, first_seen, last_seen) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app) DO UPDATE SET \
               title = CASE WHEN excluded.last_seen >= apps.last_seen AND excluded.title IS NOT NULL \
                            THEN excluded.title ELSE apps.title END, \
               first_seen = CASE WHEN excluded.first_seen < apps.first_seen \
                                 THEN excluded.first_seen ELSE apps.first_seen END, \
               last_seen = CASE WHEN excluded.last_seen > apps.last_seen \
                                THEN excluded.last_seen ELSE apps.last_seen END"
                .to_string(),
        )
        .text(app.as_str())
        .text(seen.title.as_deref())
        .int(seen.first_seen)
        .int(seen.last_seen)
        .execute(conn)
        .await?;
    }
    Ok(())
}

fn sums_from(r: &AnyRow, from: usize) -> Result<Sums, sqlx::Error> {
    Ok(Sums {
        requests: r.try_get(from)?,
        prompt: r.try_get(from + 1)?,
        completion: r.try_get(from + 2)?,
        reasoning: r.try_get(from + 3)?,
        cached: r.try_get(from + 4)?,
        cost: r.try_get(from + 5)?,
        byok_usage: 0,
    })
}

const SUMMED: &str = "CAST(SUM(requests) AS BIGINT), CAST(SUM(tokens_prompt) AS BIGINT), \
     CAST(SUM(tokens_completion) AS BIGINT), CAST(SUM(tokens_reasoning) AS BIGINT), \
     CAST(SUM(tokens_cached) AS BIGINT), CAST(SUM(cost) AS BIGINT)";

/// Separators of packed pairs: ASCII record and unit separators, which neither model ids nor
/// HTTP header values (app identities) can hold.
const PAIR_SEP: char = '\u{1e}';
const ITEM_SEP: char = '\u{1f}';

/// The SQL aggregate packing `key` and `value` of a group's rows into one string.
fn pack(backend: Backend, key: &str, value: &str) -> String {
    match backend {
        Backend::Sqlite => {
            format!("group_concat({key} || char(30) || CAST({value} AS TEXT), char(31))")
        }
        Backend::Postgres => {
            format!("string_agg({key} || chr(30) || CAST({value} AS TEXT), chr(31))")
        }
    }
}

fn unpack(packed: &str) -> anyhow::Result<Vec<(String, i64)>> {
    packed
        .split(ITEM_SEP)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (k, v) = item
                .rsplit_once(PAIR_SEP)
                .ok_or_else(|| anyhow::anyhow!("malformed packed rollup row"))?;
            Ok((k.to_string(), v.parse()?))
        })
        .collect()
}

/// What a token query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokensBy {
    Model,
    Provider,
    App,
}

impl TokensBy {
    fn source(self) -> (&'static str, &'static str) {
        match self {
            TokensBy::Model => ("rollup_models", "model"),
            TokensBy::Provider => ("rollup_models", "provider"),
            TokensBy::App => ("rollup_apps", "app"),
        }
    }
}

/// One bucket of an account's use of a model through a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBucket {
    pub start: i64,
    pub key_hash: String,
    pub model: String,
    pub provider: String,
    pub sums: Sums,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub app: String,
    pub title: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// One day of one model in an imported market source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketRow {
    pub day: i64,
    pub permaslug: String,
    pub model: String,
    pub tokens: i64,
}

impl Store {
    /// Tokens (prompt + completion) of public traffic per bucket of `period` starting in
    /// `[from, to)` and per `by` key, summed by the database (only buckets with tokens).
    pub async fn tokens_by(
        &self,
        by: TokensBy,
        period: Period,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<(i64, String, i64)>> {
        let (table, col) = by.source();
        // One row per bucket, its (key, tokens) pairs packed into one string: the driver's
        // cost is per row, and a year of daily buckets has hundreds of thousands of pairs.
        let sql = format!(
            "SELECT start, {} FROM ( \
               SELECT start, {col} AS k, CAST(SUM(tokens_prompt + tokens_completion) AS BIGINT) AS tokens \
               FROM {table} WHERE period = $1 AND start >= $2 AND start < $3 AND public = 1 \
               GROUP BY start, {col} HAVING SUM(tokens_prompt + tokens_completion) > 0) AS per_key \
             GROUP BY start",
            pack(self.backend(), "k", "tokens")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(period.name())
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let start: i64 = r.try_get(0)?;
            let packed: String = r.try_get(1)?;
            for (key, tokens) in unpack(&packed)? {
                out.push((start, key, tokens));
            }
        }
        Ok(out)
    }

    /// Public tokens and requests per `by` key over buckets of `period` starting in
    /// `[from, to)`.
    pub async fn totals_by(
        &self,
        by: TokensBy,
        period: Period,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<(String, i64, i64)>> {
        let (table, col) = by.source();
        let sql = format!(
            "SELECT {col}, CAST(SUM(tokens_prompt + tokens_completion) AS BIGINT), CAST(SUM(requests) AS BIGINT) \
             FROM {table} WHERE period = $1 AND start >= $2 AND start < $3 AND public = 1 GROUP BY {col}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(period.name())
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// The `n` models with the most public tokens in each bucket of `period` starting in
    /// `[from, to)` (ties by model id), with each bucket's total: (start, model, tokens, total).
    pub async fn top_models(
        &self,
        period: Period,
        from: i64,
        to: i64,
        n: i64,
    ) -> anyhow::Result<Vec<(i64, String, i64, i64)>> {
        let sql = format!(
            "SELECT start, MAX(total), {} FROM ( \
               SELECT start, model, tokens, \
                      ROW_NUMBER() OVER (PARTITION BY start ORDER BY tokens DESC, model) AS place, \
                      CAST(SUM(tokens) OVER (PARTITION BY start) AS BIGINT) AS total \
               FROM (SELECT start, model, CAST(SUM(tokens_prompt + tokens_completion) AS BIGINT) AS tokens \
                     FROM rollup_models WHERE period = $1 AND start >= $2 AND start < $3 AND public = 1 \
                     GROUP BY start, model HAVING SUM(tokens_prompt + tokens_completion) > 0) AS per_model \
             ) AS ranked WHERE place <= $4 GROUP BY start ORDER BY start",
            pack(self.backend(), "model", "tokens")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(period.name())
            .bind(from)
            .bind(to)
            .bind(n)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let start: i64 = r.try_get(0)?;
            let total: i64 = r.try_get(1)?;
            let mut models = unpack(&r.try_get::<String, _>(2)?)?;
            models.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            out.extend(models.into_iter().map(|(m, t)| (start, m, t, total)));
        }
        Ok(out)
    }

    /// Every sum of public traffic per model over buckets of `period` in `[from, to)`.
    pub async fn model_sums(
        &self,
        period: Period,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<(String, Sums)>> {
        let sql = format!(
            "SELECT model, {SUMMED} FROM rollup_models \
             WHERE period = $1 AND start >= $2 AND start < $3 AND public = 1 GROUP BY model"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(period.name())
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, sums_from(r, 1)?)))
            .collect()
    }

    /// One model's (and its variants') public tokens and requests per bucket:
    /// (start, model, tokens, requests).
    pub async fn model_series(
        &self,
        model: &str,
        period: Period,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<(i64, String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT start, model, CAST(SUM(tokens_prompt + tokens_completion) AS BIGINT), CAST(SUM(requests) AS BIGINT) \
             FROM rollup_models WHERE period = $1 AND start >= $2 AND start < $3 AND public = 1 \
               AND (model = $4 OR model = $5) GROUP BY start, model ORDER BY start, model",
        )
        .bind(period.name())
        .bind(from)
        .bind(to)
        .bind(model.to_string())
        .bind(format!("{model}:free"))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// Public tokens per app using one model, over buckets of `period` in `[from, to)`.
    pub async fn model_apps(
        &self,
        model: &str,
        period: Period,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT app, CAST(SUM(tokens_prompt + tokens_completion) AS BIGINT) FROM rollup_apps \
             WHERE model = $1 AND period = $2 AND start >= $3 AND start < $4 AND public = 1 GROUP BY app",
        )
        .bind(model.to_string())
        .bind(period.name())
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// An account's buckets (`hour` or `day`) starting in `[from, to)`, for one key or all.
    pub async fn account_buckets(
        &self,
        account_id: &str,
        key_hash: Option<&str>,
        period: Period,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<AccountBucket>> {
        let sql = format!(
            "SELECT start, key_hash, model, provider, {SUMMED}, CAST(SUM(byok_usage) AS BIGINT) \
             FROM rollup_accounts \
             WHERE account_id = $1 AND period = $2 AND start >= $3 AND start < $4 \
               AND ($5 = '' OR key_hash = $5) \
             GROUP BY start, key_hash, model, provider ORDER BY start, key_hash, model, provider"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id.to_string())
            .bind(period.name())
            .bind(from)
            .bind(to)
            .bind(key_hash.unwrap_or_default().to_string())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let mut sums = sums_from(r, 4)?;
                sums.byok_usage = r.try_get(10)?;
                Ok(AccountBucket {
                    start: r.try_get(0)?,
                    key_hash: r.try_get(1)?,
                    model: r.try_get(2)?,
                    provider: r.try_get(3)?,
                    sums,
                })
            })
            .collect()
    }

    pub async fn apps(&self) -> anyhow::Result<Vec<AppInfo>> {
        let rows = sqlx::query("SELECT app, title, first_seen, last_seen FROM apps")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AppInfo {
                    app: r.try_get(0)?,
                    title: r.try_get(1)?,
                    first_seen: r.try_get(2)?,
                    last_seen: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The start of the latest bucket of `period` with traffic (own traffic).
    pub async fn latest_model_bucket(&self, period: Period) -> anyhow::Result<Option<i64>> {
        let row = sqlx::query("SELECT MAX(start) FROM rollup_models WHERE period = $1")
            .bind(period.name())
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// Every rollup row, ordered: for comparing with a recount.
    pub async fn rollup_snapshot(&self) -> anyhow::Result<Deltas> {
        let mut d = Deltas::default();
        let rows = sqlx::query(
            "SELECT period, start, model, provider, public, requests, tokens_prompt, \
             tokens_completion, tokens_reasoning, tokens_cached, cost FROM rollup_models",
        )
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let period: String = r.try_get(0)?;
            d.models.insert(
                ModelKey {
                    period: Period::parse(&period).unwrap_or(Period::Day),
                    start: r.try_get(1)?,
                    model: r.try_get::<String, _>(2)?.into(),
                    provider: r.try_get::<String, _>(3)?.into(),
                    public: r.try_get::<i64, _>(4)? != 0,
                },
                sums_from(r, 5)?,
            );
        }
        let rows = sqlx::query(
            "SELECT period, start, app, model, public, requests, tokens_prompt, \
             tokens_completion, tokens_reasoning, tokens_cached, cost FROM rollup_apps",
        )
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let period: String = r.try_get(0)?;
            d.apps.insert(
                AppKey {
                    period: Period::parse(&period).unwrap_or(Period::Day),
                    start: r.try_get(1)?,
                    app: r.try_get::<String, _>(2)?.into(),
                    model: r.try_get::<String, _>(3)?.into(),
                    public: r.try_get::<i64, _>(4)? != 0,
                },
                sums_from(r, 5)?,
            );
        }
        let rows = sqlx::query(
            "SELECT account_id, period, start, key_hash, model, provider, requests, tokens_prompt, \
             tokens_completion, tokens_reasoning, tokens_cached, cost, byok_usage FROM rollup_accounts",
        )
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let period: String = r.try_get(1)?;
            let mut sums = sums_from(r, 6)?;
            sums.byok_usage = r.try_get(12)?;
            d.accounts.insert(
                AccountKey {
                    account_id: r.try_get::<String, _>(0)?.into(),
                    period: Period::parse(&period).unwrap_or(Period::Day),
                    start: r.try_get(2)?,
                    key_hash: r.try_get::<String, _>(3)?.into(),
                    model: r.try_get::<String, _>(4)?.into(),
                    provider: r.try_get::<String, _>(5)?.into(),
                },
                sums,
            );
        }
        let apps = self.apps().await?;
        for a in apps {
            d.apps_seen.insert(
                a.app,
                crate::metering::rollup::AppSeen {
                    title: a.title,
                    first_seen: a.first_seen,
                    last_seen: a.last_seen,
                },
            );
        }
        Ok(d)
    }

    /// Add deltas to the rollups (for bulk loads that wrote their records without them).
    pub async fn add_rollups(&self, d: &Deltas) -> anyhow::Result<()> {
        let mut tx = self.pool().begin().await?;
        apply(&mut *tx, self.backend(), d).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Fold every raw record, in pages, calling `each` with the records done so far.
    /// Returns the deltas of all records.
    pub async fn recount_rollups(
        &self,
        privacy: &Privacy,
        mut each: impl FnMut(u64),
    ) -> anyhow::Result<Deltas> {
        let mut all = Deltas::default();
        let mut done = 0u64;
        let mut after: Option<(i64, String)> = None;
        loop {
            let page = self.generations_page(after.as_ref(), 20_000).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.created_at_ms, last.id.clone()));
            let mut d = Deltas::default();
            for r in &page {
                d.add(r, privacy);
            }
            all.merge(d);
            done += page.len() as u64;
            each(done);
        }
        Ok(all)
    }

    /// Replace every rollup by a recount of the raw records, in one transaction (run it with
    /// the gateway stopped: records written meanwhile would wait for it, on SQLite, or be
    /// missed, on PostgreSQL).
    pub async fn rebuild_rollups(
        &self,
        privacy: &Privacy,
        each: impl FnMut(u64),
    ) -> anyhow::Result<Deltas> {
        let all = self.recount_rollups(privacy, each).await?;
        let mut tx = self.pool().begin().await?;
        for table in ["rollup_models", "rollup_apps", "rollup_accounts", "apps"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *tx)
                .await?;
        }
        apply(&mut *tx, self.backend(), &all).await?;
        tx.commit().await?;
        Ok(all)
    }

    /// Import market rows for `source`, all or nothing. Rows already there with the same key
    /// take the new figures, so importing the same file again changes nothing.
    pub async fn import_market(&self, source: &str, rows: &[MarketRow]) -> anyhow::Result<u64> {
        let mut tx = self.pool().begin().await?;
        let mut changed = 0;
        for chunk in statement_chunks(rows) {
            let sql = format!(
                "INSERT INTO market_daily (source, day, permaslug, model, tokens) VALUES {} \
                 ON CONFLICT (source, day, permaslug) DO UPDATE SET model = excluded.model, tokens = excluded.tokens \
                 WHERE market_daily.tokens <> excluded.tokens OR market_daily.model <> excluded.model",
                placeholders(self.backend(), chunk.len(), 5)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(source.to_string())
                    .bind(r.day)
                    .bind(r.permaslug.clone())
                    .bind(r.model.clone())
                    .bind(r.tokens);
            }
            changed += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// A market source's days in `[from, to)`.
    pub async fn market_rows(
        &self,
        source: &str,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<MarketRow>> {
        let rows = sqlx::query(
            "SELECT day, permaslug, model, tokens FROM market_daily \
             WHERE source = $1 AND day >= $2 AND day < $3 ORDER BY day, permaslug",
        )
        .bind(source.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MarketRow {
                    day: r.try_get(0)?,
                    permaslug: r.try_get(1)?,
                    model: r.try_get(2)?,
                    tokens: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Imported sources with their row counts and last day.
    pub async fn market_sources(&self) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
        let rows = sqlx::query(
            "SELECT source, CAST(COUNT(*) AS BIGINT), MAX(day) FROM market_daily GROUP BY source",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
            .collect()
    }
}
