//! Many gateway nodes on one PostgreSQL and one Redis (`[cluster] redis = "redis://..."`).
//!
//! PostgreSQL holds everything durable (accounts, keys, ledger, records, rollups); every node
//! already picks up key and ledger changes from it within [`crate::billing::SYNC_INTERVAL`].
//! Redis holds what must be decided once for all nodes at the moment of a request:
//!
//! - [`money`]: each prepaid account's available credits and each limited key's spending in
//!   its window, reserved and settled atomically by Lua scripts (exact integers, never
//!   floating point), and the keys' rate limits and free-model limits (sliding windows);
//! - [`health`]: endpoints' circuit breakers, `Retry-After` avoidance and recent failures, so a
//!   failing upstream seen by one node is avoided by all.
//!
//! Each node also beats a heartbeat there; the holds of a node that stops beating are given
//! back by the others ([`money`]).
//!
//! When Redis cannot be reached, billing fails closed for every key with something to decide
//! for all nodes (503 until it is back; a postpaid key without limits goes on); metering is
//! unaffected (records go to the spool and PostgreSQL); health falls back to what each node
//! sees itself.

pub mod health;
pub mod money;

use std::time::Duration;

use redis::aio::ConnectionManager;

/// A node that has not renewed its heartbeat for this long is taken for dead: the holds it
/// had are given back. It renews it every [`BEAT_EVERY`].
pub const ALIVE_FOR: Duration = Duration::from_secs(6);
const BEAT_EVERY: Duration = Duration::from_secs(1);
const REAP_EVERY: Duration = Duration::from_secs(2);

/// A node's connection to the cluster's Redis.
#[derive(Clone)]
pub struct Cluster {
    conn: ConnectionManager,
    prefix: String,
    /// This node (process): the name of its holds and heartbeat.
    node: String,
    /// Settlements (and releases) of holds still being sent, so that a shutdown can wait for
    /// them: a hold left unsettled is given back whole once this node is gone, its charge with it.
    pub settling: tokio_util::task::TaskTracker,
    /// The runtime they run on: the one the node started on, which outlives the serving
    /// threads (a shutdown stops those first).
    runtime: tokio::runtime::Handle,
}

/// Whether Redis may have run a command that failed: it was sent, and no answer came (timed
/// out, or the connection dropped), rather than refused before it could be sent.
pub fn may_have_run(e: &anyhow::Error) -> bool {
    e.downcast_ref::<redis::RedisError>().is_some_and(|e| {
        e.is_timeout() || (e.is_connection_dropped() && !e.is_connection_refusal())
    })
}

impl Cluster {
    /// Connect (waiting at most a few seconds: a node does not start without its Redis) as
    /// `node`, a name unique to this process.
    pub async fn connect(url: &str, prefix: &str, node: &str) -> anyhow::Result<Cluster> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("Redis at {} did not answer", crate::storage::redact(url))
        })??;
        let cluster = Cluster {
            conn,
            prefix: prefix.to_string(),
            node: node.to_string(),
            settling: tokio_util::task::TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        cluster.beat().await?;
        Ok(cluster)
    }

    /// Tell the others this node is alive.
    async fn beat(&self) -> anyhow::Result<()> {
        let _: () = redis::pipe()
            .sadd(self.key(&["nodes"]), &self.node)
            .ignore()
            .set_options(
                self.key(&["alive", &self.node]),
                1,
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(ALIVE_FOR.as_millis() as u64)),
            )
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Beat, and give back dead nodes' holds, until the process ends.
    pub fn spawn_upkeep(self: std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(BEAT_EVERY);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reap = tokio::time::interval(REAP_EVERY);
            reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = beat.tick() => {
                        if let Err(e) = self.beat().await {
                            tracing::warn!("cluster heartbeat failed: {e:#}");
                        }
                    }
                    _ = reap.tick() => {
                        if let Err(e) = self.release_dead_nodes().await {
                            tracing::warn!("releasing dead nodes' holds failed: {e:#}");
                        }
                    }
                }
            }
        })
    }

    /// Run a settlement or release of a hold ([`Cluster::settling`]). Callable from any
    /// thread, in a runtime or not (a reservation dropped anywhere).
    pub fn spawn_settlement(&self, settle: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(self.settling.track_future(settle));
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A key in this cluster's namespace.
    pub(crate) fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }
}
