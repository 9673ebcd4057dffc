//! Metering: one generation record per request, handed to a bounded-by-admission queue and
//! written to the database in batches by a background writer, never on the request path.
//!
//! Back-pressure: records themselves are never dropped. When more than `max_pending` records
//! wait for the database, [`Meter::accepting`] turns false and new requests are refused with
//! 503 until the writer catches up. Every record is first appended to a local spool
//! ([`spool`]), so neither a graceful shutdown (which drains the queue) nor a crash loses one:
//! the next start writes what the spool still holds.

pub mod estimate;
pub mod priority;
mod record;
pub mod rollup;
pub mod spool;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

pub use record::{Charge, GenerationRecord, ProviderResponse};

use crate::config::MeteringSettings;
use crate::storage::Store;

enum Msg {
    /// A record as its spool frame's payload, and the spool segment holding its copy. Sent
    /// encoded, not as the record: a record's twenty-odd strings, allocated by a serving
    /// thread and freed by the writer's, came back to that serving thread's allocator as
    /// blocks last written by another core, and each of its next allocations to reuse one
    /// waited on the transfer (7% of llmux's time at 32 connections, in `perf record`).
    Encoded(Box<[u8]>, Option<u64>),
    /// A record that could not be encoded (not seen: encoding into memory does not fail).
    Record(Box<GenerationRecord>),
    Flush(oneshot::Sender<()>),
    /// Write what came before, then end (closing the writer's connection before the store
    /// closes).
    Stop,
}

#[derive(Default)]
pub struct MeterStats {
    pub pending: AtomicUsize,
    /// Wakes the writer before its interval ends: a full batch is waiting, or a flush.
    wake: Notify,
    pub written: AtomicU64,
    pub write_errors: AtomicU64,
}

#[derive(Clone)]
pub struct Meter {
    tx: mpsc::UnboundedSender<Msg>,
    stats: Arc<MeterStats>,
    max_pending: usize,
    batch_size: usize,
    metrics: Arc<crate::metrics::Metrics>,
    spool: Option<Arc<spool::Spool>>,
    priority: Arc<priority::WriterPriority>,
}

impl Meter {
    /// Start the writer. It stops once every `Meter` clone is dropped and the queue is drained
    /// (or on [`Meter::stop`]); the receiver returned resolves then.
    pub fn start(
        store: Store,
        settings: &MeteringSettings,
        node: String,
        metrics: Arc<crate::metrics::Metrics>,
        privacy: Arc<rollup::Privacy>,
        spool: Option<Arc<spool::Spool>>,
    ) -> (Meter, oneshot::Receiver<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(MeterStats::default());
        let priority = Arc::new(priority::WriterPriority::new(settings.writer_idle_class));
        let writer = Writer {
            store,
            rx,
            stats: stats.clone(),
            interval: settings.flush_interval,
            batch_size: settings.batch_size,
            node,
            privacy,
            spool: spool.clone(),
            conn: None,
            priority: priority.clone(),
        };
        // A thread and runtime of its own: on SQLite, the writer's calls into the database run
        // where they are made, and block (see `storage::writer`). The receiver resolves once
        // the writer has stopped, its last batch written.
        let (stopped, handle) = oneshot::channel();
        std::thread::Builder::new()
            .name("llmux-meter".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(writer.run()),
                    Err(e) => tracing::error!("metering writer: no runtime: {e}"),
                }
                let _ = stopped.send(());
            })
            .expect("starting the metering writer's thread");
        (
            Meter {
                tx,
                stats,
                max_pending: settings.max_pending,
                batch_size: settings.batch_size,
                metrics,
                spool,
                priority,
            },
            handle,
        )
    }

    /// Whether new requests may be admitted (the queue is below its bound).
    pub fn accepting(&self) -> bool {
        self.stats.pending.load(Ordering::Relaxed) < self.max_pending
    }

    pub fn stats(&self) -> &MeterStats {
        &self.stats
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Queue a record (and count it in the metrics), after appending it to the spool so it
    /// survives a crash. Never blocks on the database, never drops.
    pub fn record(&self, r: GenerationRecord) {
        self.metrics.observe(&r);
        let encoded = spool::with_frame(&r, |frame| {
            let segment = self
                .spool
                .as_ref()
                .and_then(|s| match s.append_frame(frame) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::error!(
                            "metering spool: {e}; this record is only in memory until written"
                        );
                        None
                    }
                });
            Msg::Encoded(spool::payload(frame).into(), segment)
        });
        let msg = encoded.unwrap_or_else(|e| {
            tracing::error!("metering: encoding a record: {e}; it is only in memory until written");
            Msg::Record(Box::new(r))
        });
        let pending = self.stats.pending.fetch_add(1, Ordering::Relaxed) + 1;
        if self.tx.send(msg).is_err() {
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("metering writer has stopped; a generation record could not be queued");
        } else {
            if pending.is_multiple_of(self.batch_size) {
                self.stats.wake.notify_one();
            }
            // Two batches waiting: the writer is behind (an atomic load when it is not idle).
            if pending >= 2 * self.batch_size {
                self.priority.writer_behind();
            }
        }
    }

    /// After the writer has drained (graceful shutdown): nothing is left to replay.
    pub fn finish_spool(&self) {
        if let Some(s) = &self.spool {
            s.finish();
        }
    }

    /// End the writer once it has written what is queued (graceful shutdown, after the last
    /// request), closing its connection. A record sent after stays in the spool, for the next
    /// start to write.
    pub fn stop(&self) {
        if self.tx.send(Msg::Stop).is_ok() {
            self.priority.writer_behind();
            self.stats.wake.notify_one();
        }
    }

    /// Wait until every record queued before this call is in the database.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            // Someone waits for it: in the normal class, the writer is not left for whatever
            // else wants the cores (back to the idle class after, if it keeps up).
            self.priority.writer_behind();
            self.stats.wake.notify_one();
            let _ = rx.await;
        }
    }
}

struct Writer {
    store: Store,
    rx: mpsc::UnboundedReceiver<Msg>,
    stats: Arc<MeterStats>,
    interval: Duration,
    batch_size: usize,
    node: String,
    privacy: Arc<rollup::Privacy>,
    spool: Option<Arc<spool::Spool>>,
    /// The connection batches are written on (see [`Writer::write`]).
    conn: Option<crate::storage::WriterConnection>,
    /// Its scheduling class ([`priority`]).
    priority: Arc<priority::WriterPriority>,
}

impl Writer {
    /// The writer is not woken by each record (under load that was a wake-up of another
    /// thread per request): it wakes every interval, or at once when a batch is full or a
    /// flush is asked for, and takes what is queued.
    async fn run(mut self) {
        self.priority.register_writer();
        let mut batch: Vec<GenerationRecord> = Vec::with_capacity(self.batch_size);
        let mut segments: Vec<Option<u64>> = Vec::with_capacity(self.batch_size);
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let stats = self.stats.clone();
        let mut open = true;
        // A full batch was taken and more may be waiting: go on without sleeping.
        let mut more = false;
        while open {
            if !more {
                tokio::select! {
                    _ = stats.wake.notified() => {}
                    _ = tokio::time::sleep(self.interval) => {}
                }
            }
            more = false;
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Encoded(payload, segment)) => {
                        match spool::decode_payload(&payload) {
                            Ok(r) => {
                                batch.push(r);
                                segments.push(segment);
                            }
                            Err(e) => {
                                // Not seen (tests read every kind of field back). Its spool
                                // copy is not reported written, so the segment is kept.
                                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                                self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                                tracing::error!("metering: a queued record could not be read: {e}");
                            }
                        }
                        if batch.len() >= self.batch_size {
                            // More may be queued: take it without waiting.
                            more = true;
                            break;
                        }
                    }
                    Ok(Msg::Record(r)) => {
                        batch.push(*r);
                        segments.push(None);
                        if batch.len() >= self.batch_size {
                            more = true;
                            break;
                        }
                    }
                    Ok(Msg::Flush(w)) => waiters.push(w),
                    Ok(Msg::Stop) => {
                        open = false;
                        break;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            // A flush's records were queued before it, so they are in this batch or earlier.
            // The idle class unless a whole batch more is waiting behind this one, or someone
            // waits for this one (a flush, the last batch before stopping).
            let behind = stats
                .pending
                .load(Ordering::Relaxed)
                .saturating_sub(batch.len());
            self.priority
                .writer_keeping_up(behind < self.batch_size && waiters.is_empty() && open);
            self.write(&mut batch, &mut segments).await;
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
        if let Some(conn) = self.conn.take()
            && let Err(e) = conn.close().await
        {
            tracing::warn!("closing the metering writer's connection: {e:#}");
        }
    }

    /// Write the batch, retrying with back-off until the database takes it: an accepted
    /// record is never given up. Batches go through one connection of the writer's own
    /// ([`Store::connect_writer`]), kept while it works: its page cache then holds the pages
    /// the batches append to (taken in turn from the pool, each of SQLite's connections
    /// filled its own 4 MiB cache with them). After a failure it is dropped, and the next try
    /// connects anew.
    async fn write(&mut self, batch: &mut Vec<GenerationRecord>, segments: &mut Vec<Option<u64>>) {
        if batch.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(50);
        loop {
            let written = async {
                if self.conn.is_none() {
                    self.conn = Some(self.store.connect_writer().await?);
                }
                let conn = self.conn.as_mut().expect("taken above");
                self.store
                    .write_generations_on(conn, batch, &self.node, &self.privacy)
                    .await
            }
            .await;
            match written {
                Ok(()) => break,
                Err(e) => {
                    self.conn = None;
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "writing {} generation records failed, retrying in {delay:?}: {e:#}",
                        batch.len()
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        let n = batch.len();
        self.stats.written.fetch_add(n as u64, Ordering::Relaxed);
        self.stats.pending.fetch_sub(n, Ordering::Relaxed);
        batch.clear();
        if let Some(spool) = &self.spool {
            let mut per_segment: std::collections::BTreeMap<u64, u64> = Default::default();
            for s in segments.iter().flatten() {
                *per_segment.entry(*s).or_default() += 1;
            }
            for (segment, count) in per_segment {
                spool.written(segment, count);
            }
            spool.prepare_next();
        }
        segments.clear();
    }
}
