//! Read-side queries over generation records and the ledger: key usage, activity, and the
//! audit that checks the books.

use sqlx::Row;

use super::Store;
use crate::money::Money;

/// What `llmux ledger verify` finds. Every count but `records`, `charges` and
/// `charged_records` must be zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    pub records: i64,
    /// Ledger charge entries: one per batch, account, key and day (one per record before).
    pub charges: i64,
    /// Records some charge entry covers.
    pub charged_records: i64,
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
            charged_records: count(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM generations g \
                 WHERE EXISTS (SELECT 1 FROM ledger l WHERE l.charge_batch = g.charge_batch) \
                 OR EXISTS (SELECT 1 FROM ledger l WHERE l.generation_id = g.id)",
            )
            .await?,
            // Charges older than every record kept went with their records (retention); an
            // entry's records are all at or after its time, so a younger entry has them all.
            charges_without_record: count(
                "WITH charged AS (SELECT charge_batch FROM generations \
                     WHERE charge_batch IS NOT NULL GROUP BY charge_batch) \
                 SELECT CAST(COUNT(*) AS BIGINT) FROM ledger l \
                 LEFT JOIN charged c ON c.charge_batch = l.charge_batch \
                 WHERE l.kind = 'charge' \
                 AND l.created_at >= (SELECT COALESCE(MIN(created_at), 0) FROM generations) \
                 AND CASE WHEN l.charge_batch IS NOT NULL THEN c.charge_batch IS NULL \
                     ELSE NOT EXISTS (SELECT 1 FROM generations g WHERE g.id = l.generation_id) END",
            )
            .await?,
            records_without_charge: count(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM generations g WHERE g.cost <> 0 \
                 AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.charge_batch = g.charge_batch) \
                 AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.generation_id = g.id)",
            )
            .await?,
            mismatched_charges: count(
                "WITH charged AS (SELECT charge_batch, SUM(cost) AS cost FROM generations \
                     WHERE charge_batch IS NOT NULL GROUP BY charge_batch) \
                 SELECT CAST(COUNT(*) AS BIGINT) FROM ledger l \
                 JOIN charged c ON c.charge_batch = l.charge_batch \
                 WHERE l.kind = 'charge' AND -l.amount <> c.cost \
                 AND l.created_at >= (SELECT COALESCE(MIN(created_at), 0) FROM generations)",
            )
            .await?
                + count(
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
