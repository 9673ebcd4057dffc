//! The ledger: every credit movement, append-only. Balances are sums of it.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;
use crate::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    /// Credits bought or granted.
    TopUp,
    /// A generation's cost.
    Charge,
    /// Credits given back.
    Refund,
    /// An operator's correction, either sign.
    Adjustment,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "topup",
            LedgerKind::Charge => "charge",
            LedgerKind::Refund => "refund",
            LedgerKind::Adjustment => "adjustment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "topup" => LedgerKind::TopUp,
            "charge" => LedgerKind::Charge,
            "refund" => LedgerKind::Refund,
            "adjustment" => LedgerKind::Adjustment,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: i64,
    pub account_id: String,
    pub key_hash: Option<String>,
    pub kind: LedgerKind,
    /// Positive adds credit, negative spends it.
    pub amount: Money,
    pub generation_id: Option<String>,
    pub note: Option<String>,
    /// The gateway node (or `cli`) that wrote it.
    pub node: String,
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<LedgerEntry, sqlx::Error> {
    let kind: String = r.try_get("kind")?;
    Ok(LedgerEntry {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        key_hash: r.try_get("key_hash")?,
        kind: LedgerKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("ledger kind {kind:?}").into()))?,
        amount: Money(r.try_get("amount")?),
        generation_id: r.try_get("generation_id")?,
        note: r.try_get("note")?,
        node: r.try_get("node")?,
        created_at: r.try_get("created_at")?,
    })
}

const COLUMNS: &str =
    "id, account_id, key_hash, kind, amount, generation_id, note, node, created_at";

impl Store {
    /// Append a movement that is not a generation charge (those are written with their record).
    pub async fn append_ledger(
        &self,
        account_id: &str,
        kind: LedgerKind,
        amount: Money,
        note: Option<&str>,
        node: &str,
    ) -> anyhow::Result<LedgerEntry> {
        let now = crate::clock::now_ms();
        let row = sqlx::query(
            "INSERT INTO ledger (account_id, key_hash, kind, amount, generation_id, note, node, created_at) \
             VALUES ($1, NULL, $2, $3, NULL, $4, $5, $6) RETURNING id",
        )
        .bind(account_id)
        .bind(kind.as_str())
        .bind(amount.0)
        .bind(note)
        .bind(node)
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(LedgerEntry {
            id: row.try_get(0)?,
            account_id: account_id.to_string(),
            key_hash: None,
            kind,
            amount,
            generation_id: None,
            note: note.map(str::to_string),
            node: node.to_string(),
            created_at: now,
        })
    }

    /// The account's balance: the sum of its ledger.
    pub async fn balance(&self, account_id: &str) -> anyhow::Result<Money> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(self.pool())
        .await?;
        Ok(Money(row.try_get(0)?))
    }

    /// Total credited (top-ups, refunds, positive adjustments) and total spent (charges).
    pub async fn credit_totals(&self, account_id: &str) -> anyhow::Result<(Money, Money)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN kind <> 'charge' THEN amount ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN kind = 'charge' THEN -amount ELSE 0 END), 0) AS BIGINT) \
             FROM ledger WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(self.pool())
        .await?;
        Ok((Money(row.try_get(0)?), Money(row.try_get(1)?)))
    }

    /// Entries with an id above `after_id` and at most `through_id`, written by other nodes
    /// than `except_node` (a node knows its own), oldest first, at most `limit`.
    pub async fn ledger_between(
        &self,
        after_id: i64,
        through_id: i64,
        limit: i64,
        except_node: &str,
    ) -> anyhow::Result<Vec<LedgerEntry>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ledger WHERE id > $1 AND id <= $2 AND node <> $3 \
             ORDER BY id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after_id)
            .bind(through_id)
            .bind(except_node)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn ledger_max_id(&self) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM ledger")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The sum a key was charged since `since_ms` (for key usage and limits).
    pub async fn key_spend_since(&self, key_hash: &str, since_ms: i64) -> anyhow::Result<Money> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(-amount), 0) AS BIGINT) FROM ledger \
             WHERE key_hash = $1 AND kind = 'charge' AND created_at >= $2",
        )
        .bind(key_hash)
        .bind(since_ms)
        .fetch_one(self.pool())
        .await?;
        Ok(Money(row.try_get(0)?))
    }
}

impl Store {
    /// The account's balance, and what was credited to it (the positive entries other than
    /// charges), from its ledger entries up to id `through`.
    pub async fn account_totals_through(
        &self,
        account_id: &str,
        through: i64,
    ) -> anyhow::Result<(Money, Money)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN kind <> 'charge' AND amount > 0 THEN amount ELSE 0 END), 0) AS BIGINT) \
             FROM ledger WHERE account_id = $1 AND id <= $2",
        )
        .bind(account_id)
        .bind(through)
        .fetch_one(self.pool())
        .await?;
        Ok((Money(row.try_get(0)?), Money(row.try_get(1)?)))
    }

    /// An account's entries above id `after_id` (all that can be read now).
    pub async fn account_entries_after(
        &self,
        account_id: &str,
        after_id: i64,
    ) -> anyhow::Result<Vec<LedgerEntry>> {
        let sql = format!("SELECT {COLUMNS} FROM ledger WHERE account_id = $1 AND id > $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(after_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The ids of the entries above `after_id` and at most `through_id` that can be read now
    /// (on PostgreSQL an id is taken when its row is written and seen when its transaction
    /// commits, not always in order).
    pub async fn ledger_ids_between(
        &self,
        after_id: i64,
        through_id: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let rows = sqlx::query("SELECT id FROM ledger WHERE id > $1 AND id <= $2")
            .bind(after_id)
            .bind(through_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?)
    }
}
