//! The metering writer's connection, and the statements its transactions run.
//!
//! The writer binds 37 values per record. Through sqlx's `Any` driver, each text value was
//! copied twice more than by the backend's own driver: into `Any`'s value, then, formatted
//! anew, into the SQLite driver's (5,700 instructions per record, callgrind). So the writer
//! keeps a connection of the backend's own driver ([`WriterConnection`]). The statements stay
//! the same on every driver: [`WriteDb`] is the little they need of one, implemented for the
//! two native drivers and for `Any` (the pool's connections: bulk loads, rollup rebuilds).

use std::str::FromStr;

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Arguments, ConnectOptions, Connection, Executor, Row};

use super::{Backend, SQLITE_PRAGMAS, Store};

/// What the writer's statements need of a driver: binding texts and integers (each may be
/// NULL), running a statement, reading a column of texts.
pub(crate) trait WriteDb: sqlx::Database {
    fn add_text(args: &mut Self::Arguments, value: Option<&str>) -> Result<(), BoxDynError>;
    fn add_int(args: &mut Self::Arguments, value: Option<i64>) -> Result<(), BoxDynError>;
    /// Rows affected.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: String,
        args: Self::Arguments,
    ) -> BoxFuture<'c, sqlx::Result<u64>>;
    /// The first column of every row, as text.
    fn fetch_texts<'c>(
        conn: &'c mut Self::Connection,
        sql: String,
        args: Self::Arguments,
    ) -> BoxFuture<'c, sqlx::Result<Vec<String>>>;
}

macro_rules! write_db {
    ($db:ty) => {
        impl WriteDb for $db {
            fn add_text(
                args: &mut Self::Arguments,
                value: Option<&str>,
            ) -> Result<(), BoxDynError> {
                args.add(value)
            }

            fn add_int(args: &mut Self::Arguments, value: Option<i64>) -> Result<(), BoxDynError> {
                args.add(value)
            }

            fn execute<'c>(
                conn: &'c mut Self::Connection,
                sql: String,
                args: Self::Arguments,
            ) -> BoxFuture<'c, sqlx::Result<u64>> {
                Box::pin(async move {
                    let q = sqlx::query_with(sqlx::AssertSqlSafe(sql), args);
                    Ok(conn.execute(q).await?.rows_affected())
                })
            }

            fn fetch_texts<'c>(
                conn: &'c mut Self::Connection,
                sql: String,
                args: Self::Arguments,
            ) -> BoxFuture<'c, sqlx::Result<Vec<String>>> {
                Box::pin(async move {
                    let q = sqlx::query_with(sqlx::AssertSqlSafe(sql), args);
                    conn.fetch_all(q)
                        .await?
                        .iter()
                        .map(|r| r.try_get::<String, _>(0))
                        .collect()
                })
            }
        }
    };
}

write_db!(sqlx::Any);
write_db!(sqlx::Sqlite);
write_db!(sqlx::Postgres);

/// A statement and its arguments, bound in order; a value that fails to encode is reported
/// when the statement runs (as sqlx's own `bind` does).
pub(crate) struct Statement<DB: WriteDb> {
    sql: String,
    args: DB::Arguments,
    error: Option<BoxDynError>,
}

impl<DB: WriteDb> Statement<DB> {
    pub(crate) fn new(sql: String) -> Self {
        Statement {
            sql,
            args: Default::default(),
            error: None,
        }
    }

    pub(crate) fn text<'a>(mut self, value: impl Into<Option<&'a str>>) -> Self {
        if self.error.is_none() {
            self.error = DB::add_text(&mut self.args, value.into()).err();
        }
        self
    }

    pub(crate) fn int(mut self, value: impl Into<Option<i64>>) -> Self {
        if self.error.is_none() {
            self.error = DB::add_int(&mut self.args, value.into()).err();
        }
        self
    }

    /// Rows affected.
    pub(crate) async fn execute(self, conn: &mut DB::Connection) -> sqlx::Result<u64> {
        match self.error {
            Some(e) => Err(sqlx::Error::Encode(e)),
            None => DB::execute(conn, self.sql, self.args).await,
        }
    }

    pub(crate) async fn fetch_texts(self, conn: &mut DB::Connection) -> sqlx::Result<Vec<String>> {
        match self.error {
            Some(e) => Err(sqlx::Error::Encode(e)),
            None => DB::fetch_texts(conn, self.sql, self.args).await,
        }
    }
}

/// The metering writer's own connection, on the backend's native driver.
pub enum WriterConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl WriterConnection {
    /// Close it cleanly (SQLite checkpoints its log when its last connection closes).
    pub async fn close(self) -> anyhow::Result<()> {
        match self {
            WriterConnection::Sqlite(c) => c.close().await?,
            WriterConnection::Postgres(c) => c.close().await?,
        }
        Ok(())
    }
}

impl Store {
    /// A connection for [`Store::write_generations_on`], outside the pool (the writer keeps
    /// it: its page cache then holds the pages it appends to), set up as the pool's are.
    pub async fn connect_writer(&self) -> anyhow::Result<WriterConnection> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let mut c = SqliteConnectOptions::from_str(&self.url)?
                    .disable_statement_logging()
                    .connect()
                    .await?;
                c.execute(SQLITE_PRAGMAS).await?;
                WriterConnection::Sqlite(c)
            }
            Backend::Postgres => WriterConnection::Postgres(
                PgConnectOptions::from_str(&self.url)?
                    .disable_statement_logging()
                    .connect()
                    .await?,
            ),
        })
    }
}
