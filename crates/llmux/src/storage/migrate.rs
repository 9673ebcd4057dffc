//! Schema migrations, embedded in the binary, one set per backend, applied in order at start
//! (and by `llmux migrate`).

use sqlx::Row;

use super::{Backend, Store};

struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("migrations/sqlite/0001_init.sql"),
        postgres: include_str!("migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        sqlite: include_str!("migrations/sqlite/0002_accounts.sql"),
        postgres: include_str!("migrations/postgres/0002_accounts.sql"),
    },
    Migration {
        version: 3,
        sqlite: include_str!("migrations/sqlite/0003_rollups.sql"),
        postgres: include_str!("migrations/postgres/0003_rollups.sql"),
    },
    Migration {
        version: 4,
        sqlite: include_str!("migrations/sqlite/0004_partitions.sql"),
        postgres: include_str!("migrations/postgres/0004_partitions.sql"),
    },
];

pub(super) async fn apply(store: &Store) -> anyhow::Result<()> {
    let pool = store.pool();
    sqlx::query("CREATE TABLE IF NOT EXISTS llmux_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(pool)
        .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM llmux_schema")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let sql = match store.backend() {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO llmux_schema (version, applied_at) VALUES ($1, $2)")
            .bind(m.version)
            .bind(crate::clock::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, "applied database migration");
    }
    Ok(())
}
