//! Keeping the generation records table in shape: on PostgreSQL, monthly partitions created
//! ahead of time (and split out of the default partition when rows landed there first); on
//! both, records older than the retention setting removed (whole partitions on PostgreSQL,
//! batched deletes on SQLite). Rollups and the ledger are kept: history stays in rankings and
//! balances, only the raw rows go.

use chrono::{Datelike, TimeZone, Utc};
use sqlx::Row;

use super::{Backend, Store};

/// Months created ahead of the current one.
const MONTHS_AHEAD: i32 = 2;

/// The first millisecond of the month `offset` months from `ms`'s month.
fn month_start(ms: i64, offset: i32) -> i64 {
    let d = chrono::DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let months = d.year() * 12 + d.month0() as i32 + offset;
    Utc.with_ymd_and_hms(
        months.div_euclid(12),
        months.rem_euclid(12) as u32 + 1,
        1,
        0,
        0,
        0,
    )
    .single()
    .map_or(0, |t| t.timestamp_millis())
}

fn partition_name(start: i64) -> String {
    let d = chrono::DateTime::<Utc>::from_timestamp_millis(start).unwrap_or_default();
    format!("generations_y{:04}m{:02}", d.year(), d.month())
}

impl Store {
    /// Create the coming months' partitions (PostgreSQL) and drop or delete records older
    /// than `retention_days`. Safe to run from several nodes at once.
    pub async fn maintain_generations(&self, retention_days: Option<u32>) -> anyhow::Result<()> {
        let now = crate::clock::now_ms();
        if self.backend() == Backend::Postgres {
            // Months that have rows in the default partition get their own partition too.
            let mut months: std::collections::BTreeSet<i64> = sqlx::query(
                "SELECT DISTINCT CAST(EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(created_at / 1000.0) \
                 AT TIME ZONE 'UTC')) * 1000 AS BIGINT) FROM generations_default",
            )
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
            for offset in -1..=MONTHS_AHEAD {
                months.insert(month_start(now, offset));
            }
            for start in months {
                self.ensure_partition(start).await?;
            }
        }
        if let Some(days) = retention_days {
            let cutoff = now - i64::from(days) * crate::clock::DAY_MS;
            match self.backend() {
                Backend::Postgres => {
                    for (name, end) in self.partitions().await? {
                        if end <= cutoff {
                            let sql = format!("DROP TABLE IF EXISTS {name}");
                            sqlx::query(sqlx::AssertSqlSafe(sql))
                                .execute(self.pool())
                                .await?;
                            tracing::info!("retention: dropped partition {name}");
                        }
                    }
                    sqlx::query("DELETE FROM generations WHERE created_at < $1")
                        .bind(cutoff)
                        .execute(self.pool())
                        .await?;
                }
                Backend::Sqlite => loop {
                    let done = sqlx::query(
                        "DELETE FROM generations WHERE rowid IN \
                         (SELECT rowid FROM generations WHERE created_at < $1 LIMIT 10000)",
                    )
                    .bind(cutoff)
                    .execute(self.pool())
                    .await?
                    .rows_affected();
                    if done == 0 {
                        break;
                    }
                },
            }
        }
        Ok(())
    }

    /// Monthly partitions (name, end of range).
    async fn partitions(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'generations' \
             AND c.relname LIKE 'generations_y%'",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let name: String = r.try_get(0)?;
            // generations_yYYYYmMM
            let (y, m) = (name[13..17].parse::<i32>(), name[18..20].parse::<u32>());
            if let (Ok(y), Ok(m)) = (y, m)
                && let Some(t) = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()
            {
                out.push((name, month_start(t.timestamp_millis(), 1)));
            }
        }
        Ok(out)
    }

    /// The partition of the month starting at `start`, moving that month's rows out of the
    /// default partition first (one transaction; concurrent callers wait on the lock).
    async fn ensure_partition(&self, start: i64) -> anyhow::Result<()> {
        let name = partition_name(start);
        let end = month_start(start, 1);
        let exists: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM pg_class WHERE relname = $1")
                .bind(&name)
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
        if exists > 0 {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        sqlx::query("LOCK TABLE generations IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let exists: i64 =
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM pg_class WHERE relname = $1")
                .bind(&name)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if exists == 0 {
            for sql in [
                format!("CREATE TABLE {name} (LIKE generations INCLUDING DEFAULTS)"),
                format!(
                    "INSERT INTO {name} SELECT * FROM generations_default WHERE created_at >= {start} AND created_at < {end}"
                ),
                format!(
                    "DELETE FROM generations_default WHERE created_at >= {start} AND created_at < {end}"
                ),
                format!(
                    "ALTER TABLE generations ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})"
                ),
            ] {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *tx)
                    .await?;
            }
            tracing::info!("created partition {name}");
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let feb = Utc
            .with_ymd_and_hms(2026, 2, 11, 5, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(partition_name(month_start(feb, 0)), "generations_y2026m02");
        assert_eq!(partition_name(month_start(feb, 11)), "generations_y2027m01");
        assert_eq!(partition_name(month_start(feb, -2)), "generations_y2025m12");
    }
}
