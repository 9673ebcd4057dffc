//! Storage: one interface ([`Store`]) over SQLite (the embedded default) and PostgreSQL (for
//! many gateway nodes). Both run the same queries through sqlx's runtime-generic driver (the
//! metering writer's on a connection of its own, rusqlite's or PostgreSQL's: [`writer`]); the
//! schema is kept in one migration set per backend (`migrations/`). Money is integer
//! picodollars, times are Unix milliseconds, flags are 0/1 integers, so every value maps the
//! same way on both.

mod accounts;
mod byok;
pub mod copy;
mod generations;
mod ledger;
mod migrate;
mod retention;
mod rollups;
mod usage;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use accounts::{AccountRow, KeyRow, KeyUpdate, NewKey};
pub use byok::ByokRow;
pub use ledger::{LedgerEntry, LedgerKind};
pub use rollups::{AccountBucket, AppInfo, MarketRow, TokensBy};
pub use usage::Audit;
pub use writer::WriterConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// For connections outside the pool ([`Store::connect_writer`]).
    url: Arc<str>,
}

/// Every SQLite connection's settings. 16 KiB pages (for a new database; an existing one keeps
/// its own): a quarter of the WAL writes, each a system call, for the records' appends. A
/// 4 MiB page cache per connection: the writer spent no more CPU than with 16 MiB
/// (bench/ab.sh, llmux-bench metering), and each of the pool's connections filled all of its
/// cache with the pages of the big tables it wrote or scanned, kept while it lives.
const SQLITE_PRAGMAS: &str = "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; PRAGMA cache_size=-4096;";

impl Store {
    /// Connect to `url` (`sqlite://FILE` or `postgres://...`), creating the SQLite file and its
    /// directory if needed, and apply pending migrations.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL {url:?}");
        };
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("database URL {url:?}"))?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .with_context(|| format!("connecting to {}", redact(&url)))?;
        let store = Store {
            pool,
            backend,
            url: url.into(),
        };
        migrate::apply(&store).await?;
        // This month's and the coming months' partitions exist before anything is written.
        store.maintain_generations(None).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Hide a password in a database URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (file, query) = rest.split_once('?').map_or((rest, ""), |(f, q)| (f, q));
    if !file.is_empty()
        && file != ":memory:"
        && let Some(dir) = Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let query = if query.contains("mode=") {
        query.to_string()
    } else if query.is_empty() {
        "mode=rwc".to_string()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{file}?{query}"))
}

/// Most rows in one multi-row statement: bind parameters stay under SQLite's (32,766) and
/// PostgreSQL's (65,535) limits for the widest table (37 columns). Larger statements wrote
/// fewer records per second (256 rows: 15% fewer in `llmux-bench metering`).
pub(crate) const MAX_ROWS_PER_STATEMENT: usize = 200;

/// `rows` cut for multi-row statements: chunks of [`MAX_ROWS_PER_STATEMENT`], then what is
/// left in chunks of powers of two, so a statement comes in at most nine shapes per table.
/// Each shape is a statement that every connection compiles once and keeps in its cache; with
/// the remainder in one chunk of any length, the shapes (1 to 199 rows) filled each
/// connection's cache with up to 100 statements of thousands of parameters: 100 MB more
/// resident after a few minutes under load, and SQLite compiling again on every miss.
pub(crate) fn statement_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let n = match rest.len() {
            0 => return None,
            n if n >= MAX_ROWS_PER_STATEMENT => MAX_ROWS_PER_STATEMENT,
            n => 1 << n.ilog2(),
        };
        let (chunk, after) = rest.split_at(n);
        rest = after;
        Some(chunk)
    })
}

/// Placeholders for a multi-row statement: `(?, ?), (?, ?)` on SQLite, `($1, $2), ($3, $4)`
/// on PostgreSQL. SQLite resolves each `$N` by name, scanning every parameter of the
/// statement, which is quadratic in a bulk insert (it dominated the write path); `?` binds by
/// position.
pub(crate) fn placeholders(backend: Backend, rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            match backend {
                Backend::Sqlite => s.push('?'),
                Backend::Postgres => {
                    s.push('$');
                    s.push_str(&n.to_string());
                }
            }
            n += 1;
        }
        s.push(')');
    }
    s
}

/// 0/1 for SQL flags.
pub(crate) fn flag(b: bool) -> i64 {
    b as i64
}

#[cfg(test)]
mod tests {
    #[test]
    fn statement_chunks_come_in_few_shapes_and_cover_every_row() {
        let mut shapes = std::collections::BTreeSet::new();
        for len in 0..1200 {
            let rows: Vec<usize> = (0..len).collect();
            let chunks: Vec<&[usize]> = super::statement_chunks(&rows).collect();
            assert_eq!(chunks.concat(), rows, "every row once, in order");
            for c in &chunks {
                assert!(
                    c.len() == super::MAX_ROWS_PER_STATEMENT
                        || (c.len().is_power_of_two() && c.len() < super::MAX_ROWS_PER_STATEMENT)
                );
                shapes.insert(c.len());
            }
            // Full chunks, then at most one of each smaller power of two.
            assert!(
                chunks.len() <= len / super::MAX_ROWS_PER_STATEMENT + 8,
                "{len}"
            );
        }
        assert_eq!(shapes.len(), 9, "{shapes:?}");
    }
}
