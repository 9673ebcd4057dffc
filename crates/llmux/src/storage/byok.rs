//! Accounts' own provider keys (BYOK), stored sealed (see `billing::byok`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByokRow {
    pub account_id: String,
    pub provider: String,
    /// base64(nonce || ciphertext); only the billing module can open it.
    pub sealed: String,
    pub mode: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

fn from_row(r: &AnyRow) -> Result<ByokRow, sqlx::Error> {
    Ok(ByokRow {
        account_id: r.try_get("account_id")?,
        provider: r.try_get("provider")?,
        sealed: r.try_get("sealed")?,
        mode: r.try_get("mode")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}

const COLUMNS: &str = "account_id, provider, sealed, mode, created_at, updated_at, deleted_at";

impl Store {
    /// Store (or replace) an account's key for a provider.
    pub async fn put_byok(
        &self,
        account_id: &str,
        provider: &str,
        sealed: &str,
        mode: &str,
    ) -> anyhow::Result<()> {
        let now = crate::clock::now_ms();
        sqlx::query(
            "INSERT INTO byok_keys (account_id, provider, sealed, mode, created_at, updated_at, deleted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) \
             ON CONFLICT (account_id, provider) DO UPDATE SET sealed = excluded.sealed, mode = excluded.mode, \
             updated_at = excluded.updated_at, deleted_at = NULL",
        )
        .bind(account_id)
        .bind(provider)
        .bind(sealed)
        .bind(mode)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The account's current keys.
    pub async fn byok_keys(&self, account_id: &str) -> anyhow::Result<Vec<ByokRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM byok_keys WHERE account_id = $1 AND deleted_at IS NULL ORDER BY provider"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Keys added, changed or removed at or after `since_ms`.
    pub async fn byok_updated_since(&self, since_ms: i64) -> anyhow::Result<Vec<ByokRow>> {
        let sql = format!("SELECT {COLUMNS} FROM byok_keys WHERE updated_at >= $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since_ms)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn delete_byok(&self, account_id: &str, provider: &str) -> anyhow::Result<bool> {
        let now = crate::clock::now_ms();
        let r = sqlx::query(
            "UPDATE byok_keys SET deleted_at = $1, updated_at = $2, sealed = '' \
             WHERE account_id = $3 AND provider = $4 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(now)
        .bind(account_id)
        .bind(provider)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() > 0)
    }
}
