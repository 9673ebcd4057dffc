//! Metering: one generation record per request, handed to a bounded-by-admission queue and
//! written to the database in batches by a background writer, never on the request path.
//!
//! Back-pressure: records themselves are never dropped. When more than `max_pending` records
//! wait for the database, [`Meter::accepting`] turns false and new requests are refused with
//! 503 until the writer catches up. A graceful shutdown drains the queue; a hard crash loses
//! at most the records of one flush interval (and, with them, their charges: the ledger
//! stays consistent with the records).

pub mod estimate;
mod record;
pub mod rollup;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use record::{Charge, GenerationRecord, ProviderResponse};

use crate::config::MeteringSettings;
use crate::storage::Store;

enum Msg {
    Record(Box<GenerationRecord>),
    Flush(oneshot::Sender<()>),
}

#[derive(Default)]
pub struct MeterStats {
    pub pending: AtomicUsize,
    pub written: AtomicU64,
    pub write_errors: AtomicU64,
}

#[derive(Clone)]
pub struct Meter {
    tx: mpsc::UnboundedSender<Msg>,
    stats: Arc<MeterStats>,
    max_pending: usize,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Meter {
    /// Start the writer. It stops once every `Meter` clone is dropped and the queue is drained.
    pub fn start(
        store: Store,
        settings: &MeteringSettings,
        node: String,
        metrics: Arc<crate::metrics::Metrics>,
        privacy: Arc<rollup::Privacy>,
    ) -> (Meter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(MeterStats::default());
        let writer = Writer {
            store,
            rx,
            stats: stats.clone(),
            interval: settings.flush_interval,
            batch_size: settings.batch_size,
            node,
            privacy,
        };
        let handle = tokio::spawn(writer.run());
        (
            Meter {
                tx,
                stats,
                max_pending: settings.max_pending,
                metrics,
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

    /// Queue a record (and count it in the metrics). Never blocks, never drops.
    pub fn record(&self, r: GenerationRecord) {
        self.metrics.observe(&r);
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Record(Box::new(r))).is_err() {
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("metering writer has stopped; a generation record could not be queued");
        }
    }

    /// Wait until every record queued before this call is in the database.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
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
}

impl Writer {
    async fn run(mut self) {
        let mut batch: Vec<GenerationRecord> = Vec::with_capacity(self.batch_size);
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            let Some(first) = self.rx.recv().await else {
                break;
            };
            let deadline = tokio::time::Instant::now() + self.interval;
            let mut next = Some(first);
            loop {
                match next.take() {
                    Some(Msg::Record(r)) => batch.push(*r),
                    Some(Msg::Flush(w)) => {
                        waiters.push(w);
                        break;
                    }
                    None => {}
                }
                if batch.len() >= self.batch_size {
                    break;
                }
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(m)) => next = Some(m),
                    Ok(None) | Err(_) => break,
                }
            }
            self.write(&mut batch).await;
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
        self.write(&mut batch).await;
    }

    /// Write the batch, retrying with back-off until the database takes it: an accepted
    /// record is never given up.
    async fn write(&self, batch: &mut Vec<GenerationRecord>) {
        if batch.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match self
                .store
                .write_generations(batch, &self.node, &self.privacy)
                .await
            {
                Ok(()) => break,
                Err(e) => {
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
    }
}
