//! Accounts and API keys.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, flag};
use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: String,
    pub name: String,
    pub prepaid: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub hash: String,
    pub account_id: String,
    pub name: String,
    pub label: String,
    pub management: bool,
    pub disabled: bool,
    pub limit: Option<Money>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub expires_at: Option<i64>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Deleted keys stay stored (history refers to them) but no longer authenticate.
    pub deleted_at: Option<i64>,
}

/// A key to insert.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub hash: String,
    pub account_id: String,
    pub name: String,
    pub label: String,
    pub management: bool,
    pub limit: Option<Money>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub expires_at: Option<i64>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
}

/// Fields of a key to change (None: unchanged; `Some(None)`: cleared).
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub disabled: Option<bool>,
    pub limit: Option<Option<Money>>,
    pub limit_reset: Option<Option<String>>,
    pub include_byok_in_limit: Option<bool>,
    pub expires_at: Option<Option<i64>>,
}

const KEY_COLUMNS: &str = "hash, account_id, name, label, management, disabled, credit_limit, limit_reset, \
     include_byok_in_limit, expires_at, rpm, tpm, created_at, updated_at, deleted_at";

fn key_from_row(r: &AnyRow) -> Result<KeyRow, sqlx::Error> {
    Ok(KeyRow {
        hash: r.try_get("hash")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        label: r.try_get("label")?,
        management: r.try_get::<i64, _>("management")? != 0,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        limit: r.try_get::<Option<i64>, _>("credit_limit")?.map(Money),
        limit_reset: r.try_get("limit_reset")?,
        include_byok_in_limit: r.try_get::<i64, _>("include_byok_in_limit")? != 0,
        expires_at: r.try_get("expires_at")?,
        rpm: r.try_get("rpm")?,
        tpm: r.try_get("tpm")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}

fn account_from_row(r: &AnyRow) -> Result<AccountRow, sqlx::Error> {
    Ok(AccountRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prepaid: r.try_get::<i64, _>("prepaid")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    pub async fn create_account(
        &self,
        id: &str,
        name: &str,
        prepaid: bool,
    ) -> anyhow::Result<AccountRow> {
        let now = crate::clock::now_ms();
        sqlx::query("INSERT INTO accounts (id, name, prepaid, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(flag(prepaid))
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(AccountRow {
            id: id.to_string(),
            name: name.to_string(),
            prepaid,
            created_at: now,
        })
    }

    pub async fn account(&self, id: &str) -> anyhow::Result<Option<AccountRow>> {
        let row = sqlx::query("SELECT id, name, prepaid, created_at FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    pub async fn accounts(&self) -> anyhow::Result<Vec<AccountRow>> {
        let rows = sqlx::query(
            "SELECT id, name, prepaid, created_at FROM accounts ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(account_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn set_account_prepaid(&self, id: &str, prepaid: bool) -> anyhow::Result<()> {
        sqlx::query("UPDATE accounts SET prepaid = $1 WHERE id = $2")
            .bind(flag(prepaid))
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn insert_key(&self, k: &NewKey) -> anyhow::Result<KeyRow> {
        let now = crate::clock::now_ms();
        sqlx::query(
            "INSERT INTO api_keys (hash, account_id, name, label, management, disabled, credit_limit, limit_reset, \
             include_byok_in_limit, expires_at, rpm, tpm, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&k.hash)
        .bind(&k.account_id)
        .bind(&k.name)
        .bind(&k.label)
        .bind(flag(k.management))
        .bind(k.limit.map(|m| m.0))
        .bind(&k.limit_reset)
        .bind(flag(k.include_byok_in_limit))
        .bind(k.expires_at)
        .bind(k.rpm)
        .bind(k.tpm)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        self.key(&k.hash)
            .await?
            .ok_or_else(|| anyhow::anyhow!("key vanished after insert"))
    }

    pub async fn key(&self, hash: &str) -> anyhow::Result<Option<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(key_from_row).transpose()?)
    }

    /// Keys, oldest first; of one account when given.
    pub async fn keys(&self, account_id: Option<&str>) -> anyhow::Result<Vec<KeyRow>> {
        let rows = match account_id {
            Some(a) => {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at, hash"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(a)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE deleted_at IS NULL ORDER BY created_at, hash"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
    }

    /// Keys changed at or after `since_ms` (for propagating changes to the in-memory cache).
    pub async fn keys_updated_since(&self, since_ms: i64) -> anyhow::Result<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE updated_at >= $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since_ms)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(key_from_row).collect::<Result<_, _>>()?)
    }

    /// Apply `u` to a key; returns the updated row, None if there is no such key.
    pub async fn update_key(&self, hash: &str, u: &KeyUpdate) -> anyhow::Result<Option<KeyRow>> {
        let Some(mut k) = self.key(hash).await? else {
            return Ok(None);
        };
        if let Some(n) = &u.name {
            k.name = n.clone();
        }
        if let Some(d) = u.disabled {
            k.disabled = d;
        }
        if let Some(l) = u.limit {
            k.limit = l;
        }
        if let Some(r) = &u.limit_reset {
            k.limit_reset = r.clone();
        }
        if let Some(b) = u.include_byok_in_limit {
            k.include_byok_in_limit = b;
        }
        if let Some(e) = u.expires_at {
            k.expires_at = e;
        }
        // Strictly increasing, so pollers comparing `updated_at >= since` never miss a change
        // made within the same millisecond as the previous one.
        k.updated_at = crate::clock::now_ms().max(k.updated_at + 1);
        sqlx::query(
            "UPDATE api_keys SET name = $1, disabled = $2, credit_limit = $3, limit_reset = $4, \
             include_byok_in_limit = $5, expires_at = $6, updated_at = $7 WHERE hash = $8",
        )
        .bind(&k.name)
        .bind(flag(k.disabled))
        .bind(k.limit.map(|m| m.0))
        .bind(&k.limit_reset)
        .bind(flag(k.include_byok_in_limit))
        .bind(k.expires_at)
        .bind(k.updated_at)
        .bind(hash)
        .execute(self.pool())
        .await?;
        Ok(Some(k))
    }

    /// Delete a key (softly: it stops authenticating, history keeps referring to it).
    pub async fn delete_key(&self, hash: &str) -> anyhow::Result<bool> {
        let now = crate::clock::now_ms();
        let r = sqlx::query(
            "UPDATE api_keys SET deleted_at = $1, disabled = 1, updated_at = $2 WHERE hash = $3 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(now)
        .bind(hash)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }
}
