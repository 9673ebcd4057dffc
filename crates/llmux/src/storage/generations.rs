//! Generation records, written in batches together with their ledger charges.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::writer::{Statement, WriteConn};
use super::{Backend, Store, WriterConnection, flag, placeholders, statement_chunks};
use crate::metering::rollup::{Deltas, Period, Privacy};
use crate::metering::{Charge, GenerationRecord, ProviderResponse};
use crate::money::Money;

const COLUMNS: &[&str] = &[
    "id",
    "created_at",
    "account_id",
    "key_hash",
    "api_type",
    "requested_model",
    "model",
    "provider",
    "provider_name",
    "upstream_model",
    "upstream_id",
    "streamed",
    "cancelled",
    "finish_reason",
    "native_finish_reason",
    "tokens_prompt",
    "tokens_completion",
    "tokens_reasoning",
    "tokens_cached",
    "tokens_cache_write",
    "usage_estimated",
    "cost",
    "upstream_cost",
    "latency_ms",
    "ttft_ms",
    "generation_ms",
    "status",
    "error",
    "app_referer",
    "app_title",
    "external_user",
    "session_id",
    "user_agent",
    "is_byok",
    "provider_responses",
    "byok_usage",
];

/// Some records of a batch written without asking first were in the table already.
#[derive(Debug, thiserror::Error)]
#[error("some generation records of the batch were written before")]
struct AlreadyWritten;

/// A batch's charges: one ledger entry per account, key and UTC day rather than one per
/// record (a record's charge and its indexes were half of what writing it cost). Limit windows
/// start at midnight UTC, so no entry straddles two; each record names its entry, and the
/// entry is written in the records' transaction, so a record is charged exactly once.
#[derive(Default)]
struct BatchCharges<'a> {
    entries: Vec<ChargeEntry<'a>>,
    by_key: foldhash::HashMap<(&'a str, &'a str, i64), usize>,
    /// Random per transaction: references are unique across batches, retries and nodes.
    nonce: Option<u64>,
}

struct ChargeEntry<'a> {
    reference: String,
    account_id: &'a str,
    key_hash: &'a str,
    amount: i64,
    first_at_ms: i64,
}

impl<'a> BatchCharges<'a> {
    /// Count a record's charge in its entry; the entry's index.
    fn add(&mut self, c: &'a Charge, at_ms: i64) -> usize {
        let key = (
            c.account_id.as_str(),
            c.key_hash.as_str(),
            Period::Day.start(at_ms),
        );
        let i = match self.by_key.get(&key) {
            Some(&i) => i,
            None => {
                let nonce = *self.nonce.get_or_insert_with(rand::random);
                let i = self.entries.len();
                self.entries.push(ChargeEntry {
                    reference: format!("chg-{nonce:016x}-{i}"),
                    account_id: key.0,
                    key_hash: key.1,
                    amount: 0,
                    first_at_ms: at_ms,
                });
                self.by_key.insert(key, i);
                i
            }
        };
        let e = &mut self.entries[i];
        e.amount = e.amount.saturating_add(c.amount.0);
        e.first_at_ms = e.first_at_ms.min(at_ms);
        i
    }
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_row(r: &AnyRow) -> Result<GenerationRecord, sqlx::Error> {
    let u = |c: &str| -> Result<u64, sqlx::Error> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let responses: Option<String> = r.try_get("provider_responses")?;
    Ok(GenerationRecord {
        id: r.try_get("id")?,
        created_at_ms: r.try_get("created_at")?,
        account_id: r.try_get("account_id")?,
        key_hash: r.try_get("key_hash")?,
        api_type: r.try_get("api_type")?,
        requested_model: r.try_get("requested_model")?,
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        provider_name: r.try_get("provider_name")?,
        upstream_model: r.try_get("upstream_model")?,
        upstream_id: r.try_get("upstream_id")?,
        streamed: r.try_get::<i64, _>("streamed")? != 0,
        cancelled: r.try_get::<i64, _>("cancelled")? != 0,
        finish_reason: r.try_get("finish_reason")?,
        native_finish_reason: r.try_get("native_finish_reason")?,
        usage: llmux_protocol::canonical::Usage {
            prompt_tokens: u("tokens_prompt")?,
            completion_tokens: u("tokens_completion")?,
            cached_tokens: u("tokens_cached")?,
            cache_write_tokens: u("tokens_cache_write")?,
            reasoning_tokens: u("tokens_reasoning")?,
            upstream_cost: r.try_get("upstream_cost")?,
        },
        usage_estimated: r.try_get::<i64, _>("usage_estimated")? != 0,
        cost: Money(r.try_get("cost")?),
        upstream_cost: r.try_get("upstream_cost")?,
        latency_ms: r.try_get("latency_ms")?,
        ttft_ms: r.try_get("ttft_ms")?,
        generation_ms: r.try_get("generation_ms")?,
        status: r.try_get::<i64, _>("status")? as u16,
        error: r.try_get("error")?,
        app_referer: r.try_get("app_referer")?,
        app_title: r.try_get("app_title")?,
        external_user: r.try_get("external_user")?,
        session_id: r.try_get("session_id")?,
        user_agent: r.try_get("user_agent")?,
        is_byok: r.try_get::<i64, _>("is_byok")? != 0,
        byok_usage: Money(r.try_get("byok_usage")?),
        provider_responses: responses
            .as_deref()
            .and_then(|s| serde_json::from_str::<Vec<ProviderResponse>>(s).ok())
            .unwrap_or_default(),
        charge: None,
    })
}

impl Store {
    /// Write records, their charges (see [`BatchCharges`]) and what they add to the rollups in
    /// one transaction.
    /// Idempotent: a record already written (same id) is skipped with its charge and its
    /// rollup share, so a batch can be retried safely.
    pub async fn write_generations(
        &self,
        batch: &[GenerationRecord],
        node: &str,
        privacy: &Privacy,
    ) -> anyhow::Result<()> {
        let mut conn = self.pool().acquire().await?;
        self.write(&mut *conn, batch, node, Some(privacy))
            .await
            .map(|_| ())
    }

    /// [`Store::write_generations`] on the metering writer's own connection
    /// ([`Store::connect_writer`]).
    pub async fn write_generations_on(
        &self,
        conn: &mut WriterConnection,
        batch: &[GenerationRecord],
        node: &str,
        privacy: &Privacy,
    ) -> anyhow::Result<()> {
        match conn {
            WriterConnection::Sqlite(c) => self.write(c, batch, node, Some(privacy)).await,
            WriterConnection::Postgres(c) => self.write(c, batch, node, Some(privacy)).await,
        }
        .map(|_| ())
    }

    /// Write records and their charges without touching the rollups (bulk loads that add
    /// the rollups themselves: `llmux migrate`, the benchmark generator). Returns how many
    /// records were new.
    pub async fn write_generations_without_rollups(
        &self,
        batch: &[GenerationRecord],
        node: &str,
    ) -> anyhow::Result<u64> {
        let mut conn = self.pool().acquire().await?;
        self.write(&mut *conn, batch, node, None).await
    }

    /// Most batches hold new records only: they are inserted without asking first which are
    /// written already. When some were (a batch retried after a commit whose answer was
    /// lost, a spool replayed after a crash), that transaction is rolled back and the batch
    /// written again, asking.
    async fn write<C: WriteConn>(
        &self,
        conn: &mut C,
        batch: &[GenerationRecord],
        node: &str,
        rollups: Option<&Privacy>,
    ) -> anyhow::Result<u64> {
        match self.write_batch(conn, batch, node, rollups, false).await {
            Err(e) if e.is::<AlreadyWritten>() => {
                self.write_batch(conn, batch, node, rollups, true).await
            }
            result => result,
        }
    }

    /// One transaction: committed when all went well, otherwise rolled back here (not left
    /// to the connection: a pool's connection goes back to it, a transaction left open on
    /// SQLite holds the write lock, and the second try writes on the same connection).
    async fn write_batch<C: WriteConn>(
        &self,
        conn: &mut C,
        batch: &[GenerationRecord],
        node: &str,
        rollups: Option<&Privacy>,
        ask_first: bool,
    ) -> anyhow::Result<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        conn.begin().await?;
        let result = match self
            .write_batch_in_transaction(conn, batch, node, rollups, ask_first)
            .await
        {
            Ok(new) => conn.commit().await.map(|()| new),
            Err(e) => Err(e),
        };
        // After a failed commit too: SQLite keeps the transaction open when it could not
        // commit for a lock, PostgreSQL has ended it (and answers the rollback with a notice).
        if result.is_err()
            && let Err(r) = conn.rollback().await
        {
            tracing::debug!("rolling back a batch of generation records: {r:#}");
        }
        result
    }

    async fn write_batch_in_transaction<C: WriteConn>(
        &self,
        conn: &mut C,
        batch: &[GenerationRecord],
        node: &str,
        rollups: Option<&Privacy>,
        ask_first: bool,
    ) -> anyhow::Result<u64> {
        let mut deltas = Deltas::default();
        let mut charges = BatchCharges::default();
        let mut new = 0u64;
        for chunk in statement_chunks(batch) {
            // Which of these are already written, on the second try: asked first rather than
            // with `RETURNING id`, whose rows SQLite's driver hands over one message (and one
            // thread wake-up) each.
            let existing = match ask_first {
                true => self.existing_generations(conn, chunk).await?,
                false => Default::default(),
            };
            let fresh: Vec<&GenerationRecord> = chunk
                .iter()
                .filter(|g| !existing.contains(g.id.as_str()))
                .collect();
            if fresh.is_empty() {
                continue;
            }
            // Which ledger entry charges each record (its index in `charges`), decided
            // before the statement borrows the entries' references.
            let charged: Vec<Option<usize>> = fresh
                .iter()
                .map(|g| g.charge.as_ref().map(|c| charges.add(c, g.created_at_ms)))
                .collect();
            let sql = format!(
                "INSERT INTO generations ({}, charge_batch) VALUES {} ON CONFLICT ({}) DO NOTHING",
                COLUMNS.join(", "),
                placeholders(self.backend(), fresh.len(), COLUMNS.len() + 1),
                // PostgreSQL's key includes the partition column.
                match self.backend() {
                    Backend::Sqlite => "id",
                    Backend::Postgres => "id, created_at",
                }
            );
            let responses: Vec<Option<String>> = fresh
                .iter()
                .map(|g| {
                    (!g.provider_responses.is_empty())
                        .then(|| serde_json::to_string(&g.provider_responses).unwrap_or_default())
                })
                .collect();
            let mut q = Statement::new(sql);
            for ((g, charge), responses) in fresh.iter().zip(&charged).zip(&responses) {
                q = q
                    .text(g.id.as_str())
                    .int(g.created_at_ms)
                    .text(g.account_id.as_deref())
                    .text(g.key_hash.as_deref())
                    .text(g.api_type.as_str())
                    .text(g.requested_model.as_str())
                    .text(g.model.as_deref())
                    .text(g.provider.as_deref())
                    .text(g.provider_name.as_deref())
                    .text(g.upstream_model.as_deref())
                    .text(g.upstream_id.as_deref())
                    .int(flag(g.streamed))
                    .int(flag(g.cancelled))
                    .text(g.finish_reason.as_deref())
                    .text(g.native_finish_reason.as_deref())
                    .int(tokens(g.usage.prompt_tokens))
                    .int(tokens(g.usage.completion_tokens))
                    .int(tokens(g.usage.reasoning_tokens))
                    .int(tokens(g.usage.cached_tokens))
                    .int(tokens(g.usage.cache_write_tokens))
                    .int(flag(g.usage_estimated))
                    .int(g.cost.0)
                    .text(g.upstream_cost.as_deref())
                    .int(g.latency_ms)
                    .int(g.ttft_ms)
                    .int(g.generation_ms)
                    .int(g.status as i64)
                    .text(g.error.as_deref())
                    .text(g.app_referer.as_deref())
                    .text(g.app_title.as_deref())
                    .text(g.external_user.as_deref())
                    .text(g.session_id.as_deref())
                    .text(g.user_agent.as_deref())
                    .int(flag(g.is_byok))
                    .text(responses.as_deref())
                    .int(g.byok_usage.0)
                    .text(charge.map(|i| charges.entries[i].reference.as_str()));
            }
            let written = q.execute(conn).await?;
            if !ask_first && written < fresh.len() as u64 {
                return Err(AlreadyWritten.into());
            }
            // Records are written by their own node's writer only; another writer racing on
            // the same ids would have its share counted twice: the batch is retried instead.
            anyhow::ensure!(
                written == fresh.len() as u64,
                "{} of {} generation records were written concurrently; retrying the batch",
                fresh.len() as u64 - written,
                fresh.len()
            );
            new += written;
            if let Some(privacy) = rollups {
                for g in &fresh {
                    deltas.add(g, privacy);
                }
            }
        }
        for entries in statement_chunks(&charges.entries) {
            let sql = format!(
                "INSERT INTO ledger (account_id, key_hash, kind, amount, note, node, created_at, charge_batch) \
                 VALUES {}",
                placeholders(self.backend(), entries.len(), 8)
            );
            let mut q = Statement::new(sql);
            for e in entries {
                q = q
                    .text(e.account_id)
                    .text(e.key_hash)
                    .text("charge")
                    .int(-e.amount)
                    .text(None::<&str>)
                    .text(node)
                    .int(e.first_at_ms)
                    .text(e.reference.as_str());
            }
            q.execute(conn).await?;
        }
        if !deltas.is_empty() {
            super::rollups::apply(conn, self.backend(), &deltas).await?;
        }
        Ok(new)
    }

    /// The ids of `chunk` already in the table.
    async fn existing_generations<C: WriteConn>(
        &self,
        conn: &mut C,
        chunk: &[GenerationRecord],
    ) -> anyhow::Result<std::collections::HashSet<String>> {
        let backend = self.backend();
        let ids = placeholders(backend, 1, chunk.len());
        let sql = match backend {
            Backend::Sqlite => format!("SELECT id FROM generations WHERE id IN {ids}"),
            // The time range lets PostgreSQL look in the records' partitions only.
            Backend::Postgres => format!(
                "SELECT id FROM generations WHERE id IN {ids} AND created_at BETWEEN ${} AND ${}",
                chunk.len() + 1,
                chunk.len() + 2
            ),
        };
        let mut q = Statement::new(sql);
        for g in chunk {
            q = q.text(g.id.as_str());
        }
        if backend == Backend::Postgres {
            let times = chunk.iter().map(|g| g.created_at_ms);
            q = q
                .int(times.clone().min().unwrap_or_default())
                .int(times.max().unwrap_or_default());
        }
        Ok(q.fetch_texts(conn).await?.into_iter().collect())
    }

    /// Records in `(created_at, id)` order after `after`, at most `limit` of them.
    pub async fn generations_page(
        &self,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> anyhow::Result<Vec<GenerationRecord>> {
        let (at, id) = after.cloned().unwrap_or((i64::MIN, String::new()));
        let sql = format!(
            "SELECT {} FROM generations WHERE created_at >= $1 AND (created_at > $1 OR id > $2) \
             ORDER BY created_at, id LIMIT $3",
            COLUMNS.join(", ")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn generation(&self, id: &str) -> anyhow::Result<Option<GenerationRecord>> {
        let sql = format!(
            "SELECT {} FROM generations WHERE id = $1",
            COLUMNS.join(", ")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    pub async fn generation_count(&self) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM generations")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }
}
