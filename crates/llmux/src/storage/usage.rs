//! Read-side queries over generation records and the ledger: key usage, activity, and the
//! audit that checks the books.

use sqlx::Row;

use super::Store;
use crate::money::Money;

/// One row of `GET /activity`: a UTC day, a model and a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    pub model: String,
    pub provider: String,
    pub usage: Money,
    pub byok_usage: Money,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub reasoning_tokens: i64,
    pub cached_tokens: i64,
}

/// What `llmux ledger verify` finds. Every count but `records` and `charges` must be zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    pub records: i64,
    pub charges: i64,
    /// Charges whose generation record does not exist.
    pub charges_without_record: i64,
    /// Records with a cost and no charge.
    pub records_without_charge: i64,
    /// Charges that differ from their record's cost.
    pub mismatched_charges: i64,
    /// Prepaid accounts whose balance is below zero.
    pub negative_prepaid_accounts: Vec<(String, Money)>,
}

impl Audit {
    pub fn is_clean(&self) -> bool {
        self.charges_without_record == 0
            && self.records_without_charge == 0
            && self.mismatched_charges == 0
            && self.negative_prepaid_accounts.is_empty()
    }
}

const MS_PER_DAY: i64 = 86_400_000;

impl Store {
    /// What a key was charged, and its BYOK usage, since `since_ms`.
    pub async fn key_usage_since(
        &self,
        key_hash: &str,
        since_ms: i64,
    ) -> anyhow::Result<(Money, Money)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(cost), 0) AS BIGINT), CAST(COALESCE(SUM(byok_usage), 0) AS BIGINT) \
             FROM generations WHERE key_hash = $1 AND created_at >= $2",
        )
        .bind(key_hash)
        .bind(since_ms)
        .fetch_one(self.pool())
        .await?;
        Ok((Money(row.try_get(0)?), Money(row.try_get(1)?)))
    }

    /// The account's (or one key's) activity per UTC day, model and provider, for generations
    /// created in `[since_ms, until_ms)`.
    pub async fn activity(
        &self,
        account_id: &str,
        key_hash: Option<&str>,
        since_ms: i64,
        until_ms: i64,
    ) -> anyhow::Result<Vec<ActivityRow>> {
        let sql = format!(
            "SELECT created_at / {MS_PER_DAY} AS day, model, provider_name, \
                    CAST(SUM(cost) AS BIGINT), CAST(SUM(byok_usage) AS BIGINT), CAST(COUNT(*) AS BIGINT), \
                    CAST(SUM(tokens_prompt) AS BIGINT), CAST(SUM(tokens_completion) AS BIGINT), \
                    CAST(SUM(tokens_reasoning) AS BIGINT), CAST(SUM(tokens_cached) AS BIGINT) \
             FROM generations \
             WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 AND model IS NOT NULL {} \
             GROUP BY created_at / {MS_PER_DAY}, model, provider_name \
             ORDER BY day, model, provider_name",
            if key_hash.is_some() {
                "AND key_hash = $4"
            } else {
                ""
            }
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(since_ms)
            .bind(until_ms);
        if let Some(k) = key_hash {
            q = q.bind(k);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(ActivityRow {
                    day: r.try_get(0)?,
                    model: r.try_get(1)?,
                    provider: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
                    usage: Money(r.try_get(3)?),
                    byok_usage: Money(r.try_get(4)?),
                    requests: r.try_get(5)?,
                    prompt_tokens: r.try_get(6)?,
                    completion_tokens: r.try_get(7)?,
                    reasoning_tokens: r.try_get(8)?,
                    cached_tokens: r.try_get(9)?,
                })
            })
            .collect()
    }

    /// Check that the ledger and the generation records agree.
    pub async fn audit(&self) -> anyhow::Result<Audit> {
        let count = |sql: &'static str| async move {
            let row = sqlx::query(sql).fetch_one(self.pool()).await?;
            anyhow::Ok(row.try_get::<i64, _>(0)?)
        };
        let negative = sqlx::query(
            "SELECT a.id, CAST(SUM(l.amount) AS BIGINT) FROM accounts a JOIN ledger l ON l.account_id = a.id \
             WHERE a.prepaid = 1 GROUP BY a.id HAVING SUM(l.amount) < 0 ORDER BY a.id",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, Money(r.try_get(1)?))))
        .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Audit {
            records: count("SELECT CAST(COUNT(*) AS BIGINT) FROM generations").await?,
            charges: count("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger WHERE kind = 'charge'").await?,
            charges_without_record: count(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger l WHERE l.kind = 'charge' \
                 AND NOT EXISTS (SELECT 1 FROM generations g WHERE g.id = l.generation_id)",
            )
            .await?,
            records_without_charge: count(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM generations g WHERE g.cost <> 0 \
                 AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.generation_id = g.id)",
            )
            .await?,
            mismatched_charges: count(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger l JOIN generations g ON g.id = l.generation_id \
                 WHERE l.kind = 'charge' AND -l.amount <> g.cost",
            )
            .await?,
            negative_prepaid_accounts: negative,
        })
    }
}

impl Store {
    /// Requests a key made to free (`:free`) models since `since_ms`.
    pub async fn free_requests_since(&self, key_hash: &str, since_ms: i64) -> anyhow::Result<u64> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM generations \
             WHERE key_hash = $1 AND created_at >= $2 AND requested_model LIKE '%:free'",
        )
        .bind(key_hash)
        .bind(since_ms)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
    }
}
