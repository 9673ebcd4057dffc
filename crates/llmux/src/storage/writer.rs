//! The metering writer's connection, and the statements its transactions run.
//!
//! The writer binds 37 values per record. Bound through sqlx, each text value was copied
//! into a new allocation of the driver's, and SQLite's work went to the connection's own
//! thread and back; binding took more instructions than SQLite's inserting (callgrind: 28,000
//! per record against 15,500). So on SQLite the writer keeps a rusqlite connection, on a
//! thread of its own ([`crate::metering`]), binding the records' own texts; on PostgreSQL, a
//! connection of sqlx's native driver. The statements stay the same on every connection:
//! they are built once, as a [`Statement`] of borrowed values, and [`WriteConn`] is the
//! little they need of a connection, implemented for both and for sqlx's `Any` (the pool's
//! connections: bulk loads, rollup rebuilds).

use std::str::FromStr;

use futures::FutureExt;
use futures::future::BoxFuture;
use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::postgres::PgConnection;
use sqlx::{Arguments, ConnectOptions, Connection, Executor, Row};

use super::{Backend, SQLITE_PRAGMAS, Store};

/// A value for one of a statement's placeholders, borrowed from what is written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

/// A statement and its values, bound in order.
pub(crate) struct Statement<'a> {
    sql: String,
    args: Vec<Value<'a>>,
}

impl<'a> Statement<'a> {
    pub(crate) fn new(sql: String) -> Self {
        Statement {
            sql,
            args: Vec::new(),
        }
    }

    pub(crate) fn text(mut self, value: impl Into<Option<&'a str>>) -> Self {
        self.args.push(Value::Text(value.into()));
        self
    }

    pub(crate) fn int(mut self, value: impl Into<Option<i64>>) -> Self {
        self.args.push(Value::Int(value.into()));
        self
    }

    /// Rows affected.
    pub(crate) async fn execute<C: WriteConn + ?Sized>(self, conn: &mut C) -> anyhow::Result<u64> {
        conn.execute(&self.sql, &self.args).await
    }

    pub(crate) async fn fetch_texts<C: WriteConn + ?Sized>(
        self,
        conn: &mut C,
    ) -> anyhow::Result<Vec<String>> {
        conn.fetch_texts(&self.sql, &self.args).await
    }
}

/// What the writer's statements need of a connection: a transaction, running a statement,
/// reading a column of texts.
pub(crate) trait WriteConn: Send {
    fn begin(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;
    fn commit(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;
    fn rollback(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Rows affected.
    fn execute<'c>(
        &'c mut self,
        sql: &'c str,
        args: &'c [Value<'c>],
    ) -> BoxFuture<'c, anyhow::Result<u64>>;
    /// The first column of every row, as text.
    fn fetch_texts<'c>(
        &'c mut self,
        sql: &'c str,
        args: &'c [Value<'c>],
    ) -> BoxFuture<'c, anyhow::Result<Vec<String>>>;
}

/// The values, copied into sqlx's arguments for `DB`.
fn sqlx_arguments<DB: sqlx::Database>(values: &[Value<'_>]) -> sqlx::Result<DB::Arguments>
where
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut bound = DB::Arguments::default();
    for v in values {
        match *v {
            Value::Text(t) => bound.add(t),
            Value::Int(i) => bound.add(i),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(bound)
}

/// sqlx's connections: the values are copied into the driver's arguments. Transactions are
/// begun and ended in SQL: [`Store`]'s batches always end theirs (see `write_batch`).
macro_rules! sqlx_write_conn {
    ($conn:ty, $db:ty) => {
        impl WriteConn for $conn {
            fn begin(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
                async move { Ok(Executor::execute(&mut *self, "BEGIN").await.map(|_| ())?) }.boxed()
            }

            fn commit(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
                async move { Ok(Executor::execute(&mut *self, "COMMIT").await.map(|_| ())?) }
                    .boxed()
            }

            fn rollback(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
                async move {
                    Ok(Executor::execute(&mut *self, "ROLLBACK")
                        .await
                        .map(|_| ())?)
                }
                .boxed()
            }

            fn execute<'c>(
                &'c mut self,
                sql: &'c str,
                args: &'c [Value<'c>],
            ) -> BoxFuture<'c, anyhow::Result<u64>> {
                async move {
                    let bound = sqlx_arguments::<$db>(args)?;
                    let q = sqlx::query_with(sqlx::AssertSqlSafe(sql.to_string()), bound);
                    Ok(Executor::execute(&mut *self, q).await?.rows_affected())
                }
                .boxed()
            }

            fn fetch_texts<'c>(
                &'c mut self,
                sql: &'c str,
                args: &'c [Value<'c>],
            ) -> BoxFuture<'c, anyhow::Result<Vec<String>>> {
                async move {
                    let bound = sqlx_arguments::<$db>(args)?;
                    let q = sqlx::query_with(sqlx::AssertSqlSafe(sql.to_string()), bound);
                    let rows = Executor::fetch_all(&mut *self, q).await?;
                    Ok(rows
                        .iter()
                        .map(|r| r.try_get::<String, _>(0))
                        .collect::<sqlx::Result<_>>()?)
                }
                .boxed()
            }
        }
    };
}

sqlx_write_conn!(sqlx::AnyConnection, sqlx::Any);
sqlx_write_conn!(PgConnection, sqlx::Postgres);

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Text(Some(t)) => ValueRef::Text(t.as_bytes()),
            Value::Int(Some(i)) => ValueRef::Integer(i),
            Value::Text(None) | Value::Int(None) => ValueRef::Null,
        }))
    }
}

/// A prepared statement from the connection's cache, with `args` bound.
fn bound<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    args: &[Value<'_>],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut st = conn.prepare_cached(sql)?;
    for (i, v) in args.iter().enumerate() {
        st.raw_bind_parameter(i + 1, v)?;
    }
    Ok(st)
}

/// SQLite's calls run to completion where they are made: the futures are ready when
/// returned. The metering writer makes them on a thread of its own (`llmux-meter`).
impl WriteConn for rusqlite::Connection {
    fn begin(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        // The write lock at once (waiting up to the busy timeout for it), rather than at the
        // first write: a transaction that had read first could not get it if another
        // connection wrote in between.
        let r = self.execute_batch("BEGIN IMMEDIATE");
        futures::future::ready(r.map_err(Into::into)).boxed()
    }

    fn commit(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        let r = self.execute_batch("COMMIT");
        futures::future::ready(r.map_err(Into::into)).boxed()
    }

    fn rollback(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        let r = self.execute_batch("ROLLBACK");
        futures::future::ready(r.map_err(Into::into)).boxed()
    }

    fn execute<'c>(
        &'c mut self,
        sql: &'c str,
        args: &'c [Value<'c>],
    ) -> BoxFuture<'c, anyhow::Result<u64>> {
        let r = bound(self, sql, args).and_then(|mut st| st.raw_execute());
        // A batch is milliseconds of SQLite's work in a row; between its statements the
        // thread gives way, so the threads serving requests do not wait for all of it on this
        // core (c=1, p99: 2.0 ms without, 0.7 with; bench/gateway.sh's setup).
        std::thread::yield_now();
        futures::future::ready(r.map(|n| n as u64).map_err(Into::into)).boxed()
    }

    fn fetch_texts<'c>(
        &'c mut self,
        sql: &'c str,
        args: &'c [Value<'c>],
    ) -> BoxFuture<'c, anyhow::Result<Vec<String>>> {
        let r = bound(self, sql, args).and_then(|mut st| {
            let mut rows = st.raw_query();
            let mut texts = Vec::new();
            while let Some(row) = rows.next()? {
                texts.push(row.get::<_, String>(0)?);
            }
            Ok(texts)
        });
        futures::future::ready(r.map_err(Into::into)).boxed()
    }
}

/// The metering writer's own connection: rusqlite's on SQLite (its calls block: see
/// [`crate::metering`]), the native driver's on PostgreSQL.
pub enum WriterConnection {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
}

impl WriterConnection {
    /// Close it cleanly (SQLite checkpoints its log when its last connection closes).
    pub async fn close(self) -> anyhow::Result<()> {
        match self {
            WriterConnection::Sqlite(c) => c.close().map_err(|(_, e)| e)?,
            WriterConnection::Postgres(c) => c.close().await?,
        }
        Ok(())
    }
}

/// Statement shapes a writer's SQLite connection keeps compiled: up to nine per table for the
/// records, the ledger and three rollups (see `statement_chunks`), and their second tries.
const SQLITE_STATEMENT_CACHE: usize = 128;

impl Store {
    /// A connection for [`Store::write_generations_on`], outside the pool (the writer keeps
    /// it: its page cache then holds the pages it appends to), set up as the pool's are.
    pub async fn connect_writer(&self) -> anyhow::Result<WriterConnection> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let file = sqlx::sqlite::SqliteConnectOptions::from_str(&self.url)?
                    .get_filename()
                    .to_owned();
                let c = rusqlite::Connection::open(&file)?;
                c.execute_batch(SQLITE_PRAGMAS)?;
                c.set_prepared_statement_cache_capacity(SQLITE_STATEMENT_CACHE);
                WriterConnection::Sqlite(c)
            }
            Backend::Postgres => WriterConnection::Postgres(
                sqlx::postgres::PgConnectOptions::from_str(&self.url)?
                    .disable_statement_logging()
                    .connect()
                    .await?,
            ),
        })
    }
}
