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
    Migration {
        version: 5,
        sqlite: include_str!("migrations/sqlite/0005_batch_charges.sql"),
        postgres: include_str!("migrations/postgres/0005_batch_charges.sql"),
    },
];

pub(super) async fn apply(store: &Store) -> anyhow::Result<()> {
    // One connection for the whole run; on PostgreSQL it holds an advisory lock, so nodes
    // starting together on one database migrate one after the other.
    let mut conn = store.pool().acquire().await?;
    if store.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_lock(7140411)")
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_on(store.backend(), &mut conn).await;
    if store.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock(7140411)")
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply_on(backend: Backend, conn: &mut sqlx::AnyConnection) -> anyhow::Result<()> {
    sqlx::query("CREATE TABLE IF NOT EXISTS llmux_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM llmux_schema")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let sql = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        // Claim the version first: a node starting at the same moment waits on this row
        // until the other's migration commits, then finds it applied (or, if it failed, takes
        // over). Several nodes can start together on one database.
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let claimed = sqlx::query(
            "INSERT INTO llmux_schema (version, applied_at) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
        )
        .bind(m.version)
        .bind(crate::clock::now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, "applied database migration");
    }
    Ok(())
}
