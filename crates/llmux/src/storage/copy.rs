//! Copying an installation from one store to another (`llmux migrate --from --to`): every
//! table in pages, generic over columns (all values are integers or text, on both backends),
//! then a check that counts, balances and totals agree.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use super::{Backend, Store, placeholders, rollups, statement_chunks};

/// Tables in copy order (referenced before referencing), each with the columns that order its
/// pages. The ledger's own ids are not copied: the destination numbers its entries.
pub const TABLES: &[(&str, &[&str])] = &[
    ("accounts", &["id"]),
    ("api_keys", &["hash"]),
    ("byok_keys", &["account_id", "provider"]),
    ("ledger", &["id"]),
    ("generations", &["created_at", "id"]),
    ("rollup_models", rollups::MODEL_KEY),
    ("rollup_apps", rollups::APP_KEY),
    ("apps", &["app"]),
    ("rollup_accounts", rollups::ACCOUNT_KEY),
    ("market_daily", &["source", "day", "permaslug"]),
];

/// Rows per page read and written.
const PAGE: i64 = 5000;

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
}

/// A row's values, typed by their columns' declared types (a NULL keeps its column's type,
/// which PostgreSQL insists on).
fn cells(row: &AnyRow, integer: &HashSet<String>) -> anyhow::Result<Vec<Cell>> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(if integer.contains(c.name()) {
                Cell::Int(row.try_get::<Option<i64>, _>(i)?)
            } else {
                Cell::Text(row.try_get::<Option<String>, _>(i)?)
            })
        })
        .collect()
}

impl Store {
    /// The integer columns of `table` (the others are text).
    async fn integer_columns(&self, table: &str) -> anyhow::Result<HashSet<String>> {
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT name, type FROM pragma_table_info($1)",
            Backend::Postgres => {
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let rows = sqlx::query(sql)
            .bind(table.to_string())
            .fetch_all(self.pool())
            .await?;
        let mut out = HashSet::new();
        for r in rows {
            let (name, kind): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let kind = kind.to_ascii_lowercase();
            if kind.contains("int") {
                out.insert(name);
            }
        }
        anyhow::ensure!(
            !out.is_empty() || table == "apps",
            "no columns found for {table}"
        );
        Ok(out)
    }

    pub async fn row_count(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}");
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(self.pool())
            .await?
            .try_get(0)?)
    }

    /// Copy `table` from `self` to `to`, calling `progress` with the rows copied so far.
    pub async fn copy_table(
        &self,
        to: &Store,
        table: &str,
        order: &[&str],
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<u64> {
        let integer = self.integer_columns(table).await?;
        let mut copied = 0u64;
        // Keyset pages: each page starts after the last row's key, so a page costs the same
        // at row 100 million as at row one.
        let mut last: Option<Vec<Cell>> = None;
        loop {
            let after = match &last {
                None => String::new(),
                Some(_) => format!(
                    "WHERE ({}) > {}",
                    order.join(", "),
                    placeholders(self.backend(), 1, order.len())
                ),
            };
            let sql = format!(
                "SELECT * FROM {table} {after} ORDER BY {} LIMIT {PAGE}",
                order.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for cell in last.iter().flatten() {
                q = match cell.clone() {
                    Cell::Int(v) => q.bind(v),
                    Cell::Text(v) => q.bind(v),
                };
            }
            let rows = q.fetch_all(self.pool()).await?;
            let Some(first) = rows.first() else { break };
            let columns: Vec<String> = first
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .filter(|c| !(table == "ledger" && c == "id"))
                .collect();
            let skip_id = table == "ledger";
            let mut tx = to.pool().begin().await?;
            for chunk in statement_chunks(&rows) {
                let sql = format!(
                    "INSERT INTO {table} ({}) VALUES {}",
                    columns.join(", "),
                    placeholders(to.backend(), chunk.len(), columns.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for row in chunk {
                    for (i, cell) in cells(row, &integer)?.into_iter().enumerate() {
                        if skip_id && row.columns()[i].name() == "id" {
                            continue;
                        }
                        q = match cell {
                            Cell::Int(v) => q.bind(v),
                            Cell::Text(v) => q.bind(v),
                        };
                    }
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            copied += rows.len() as u64;
            progress(copied);
            let tail = rows.last().expect("non-empty page");
            let tail_cells = cells(tail, &integer)?;
            last = Some(
                order
                    .iter()
                    .map(|k| {
                        let i = tail
                            .columns()
                            .iter()
                            .position(|c| c.name() == *k)
                            .expect("key column");
                        tail_cells[i].clone()
                    })
                    .collect(),
            );
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        Ok(copied)
    }

    /// What must agree after a copy: per table row counts, every account's balance, and the
    /// records' token and cost totals.
    pub async fn fingerprint(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for (table, _) in TABLES {
            out.push((
                format!("rows in {table}"),
                self.row_count(table).await?.to_string(),
            ));
        }
        for a in self.accounts().await? {
            out.push((
                format!("balance of {}", a.id),
                self.balance(&a.id).await?.to_string(),
            ));
        }
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(tokens_prompt), 0) AS BIGINT), CAST(COALESCE(SUM(tokens_completion), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cost), 0) AS BIGINT) FROM generations",
        )
        .fetch_one(self.pool())
        .await?;
        for (i, name) in ["prompt tokens", "completion tokens", "cost (picodollars)"]
            .iter()
            .enumerate()
        {
            out.push((
                format!("records' {name}"),
                row.try_get::<i64, _>(i)?.to_string(),
            ));
        }
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(tokens_prompt + tokens_completion), 0) AS BIGINT) FROM rollup_models WHERE period = 'day'",
        )
        .fetch_one(self.pool())
        .await?;
        out.push((
            "rollups' tokens".into(),
            row.try_get::<i64, _>(0)?.to_string(),
        ));
        Ok(out)
    }
}
