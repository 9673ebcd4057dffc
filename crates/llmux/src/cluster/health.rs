//! Endpoint health shared between nodes: twice a second each node adds what it saw (successes
//! and failures per second, a breaker it opened, a `Retry-After` it got) to Redis and reads
//! back what all nodes saw over the unstable window, so an upstream failing for one node is
//! avoided by all. Latency and throughput percentiles stay per node.

use std::sync::Arc;
use std::time::Duration;

use super::Cluster;
use crate::pipeline::Gateway;
use crate::router::health::Shared;

const EVERY: Duration = Duration::from_millis(500);
/// An endpoint's counts are kept this long in Redis after the last one.
const KEEP_MS: i64 = 600_000;
/// Per-second counts live in a ring of this many one-second slots (so an endpoint's hash
/// stays small however long it is used): the longest window the cluster can share.
const SLOTS: i64 = 300;

/// Add this node's successes and failures of one second to an endpoint's ring of slots.
const ADD_COUNTS: &str = r#"
-- KEYS: the endpoint's counts. ARGV: second, ok, failed, slots, keep_ms.
local slot = tostring(tonumber(ARGV[1]) % tonumber(ARGV[4]))
if redis.call('HGET', KEYS[1], slot .. ':sec') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], slot .. ':sec', ARGV[1], slot .. ':ok', 0, slot .. ':fail', 0)
end
redis.call('HINCRBY', KEYS[1], slot .. ':ok', ARGV[2])
redis.call('HINCRBY', KEYS[1], slot .. ':fail', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"#;

fn endpoint(provider: &str, model: &str) -> String {
    format!("{provider}|{model}")
}

impl Cluster {
    /// Tell the cluster what this node saw, then read back what every node saw.
    async fn exchange_health(
        &self,
        health: &crate::router::health::Health,
        window_secs: i64,
    ) -> anyhow::Result<()> {
        let now = crate::clock::now_ms();
        let second = now.div_euclid(1000);
        let mut endpoints = health.all();
        let troubled = self.key(&["health", "troubled"]);
        let mut push = redis::pipe();
        let mut pushed = false;
        for ((provider, model), h) in &endpoints {
            let mine = h.take_unshared();
            let id = endpoint(provider, model);
            let counts = self.key(&["health", &id]);
            if mine.failed > 0 || mine.open_until > now || mine.avoid_until > now {
                // Listed, so nodes that never used this endpoint learn of its trouble too.
                let until = now.max(mine.open_until).max(mine.avoid_until);
                push.zadd(&troubled, &id, until).ignore();
            }
            if mine.ok > 0 || mine.failed > 0 {
                push.cmd("EVAL")
                    .arg(ADD_COUNTS)
                    .arg(1)
                    .arg(&counts)
                    .arg(second)
                    .arg(mine.ok)
                    .arg(mine.failed)
                    .arg(SLOTS)
                    .arg(KEEP_MS)
                    .ignore();
                pushed = true;
            }
            for (name, until) in [("open", mine.open_until), ("avoid", mine.avoid_until)] {
                if until > now {
                    push.set_options(
                        self.key(&[name, &id]),
                        until,
                        redis::SetOptions::default()
                            .with_expiration(redis::SetExpiry::PX((until - now) as u64)),
                    )
                    .ignore();
                    pushed = true;
                }
            }
        }
        let mut conn = self.conn();
        if pushed {
            push.zrembyscore(&troubled, "-inf", now - KEEP_MS).ignore();
            push.query_async::<()>(&mut conn).await?;
        }
        let recent: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&troubled)
            .arg(now - window_secs * 1000)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        for id in recent {
            if let Some((provider, model)) = id.split_once('|')
                && !endpoints
                    .iter()
                    .any(|((p, m), _)| p == provider && m == model)
            {
                endpoints.push((
                    (provider.to_string(), model.to_string()),
                    health.of(provider, model),
                ));
            }
        }
        if endpoints.is_empty() {
            return Ok(());
        }
        let mut pull = redis::pipe();
        for ((provider, model), _) in &endpoints {
            let id = endpoint(provider, model);
            pull.hgetall(self.key(&["health", &id]))
                .get(self.key(&["open", &id]))
                .get(self.key(&["avoid", &id]));
        }
        type Reply = (
            std::collections::HashMap<String, i64>,
            Option<i64>,
            Option<i64>,
        );
        let replies: Vec<Reply> = {
            let flat: Vec<redis::Value> = pull.query_async(&mut conn).await?;
            flat.chunks(3)
                .map(|c| {
                    Ok((
                        redis::from_redis_value(c[0].clone())?,
                        redis::from_redis_value(c[1].clone())?,
                        redis::from_redis_value(c[2].clone())?,
                    ))
                })
                .collect::<Result<_, redis::ParsingError>>()?
        };
        for ((_, h), (counts, open, avoid)) in endpoints.iter().zip(replies) {
            let mut shared = Shared {
                open_until: open.unwrap_or(0),
                avoid_until: avoid.unwrap_or(0),
                ..Shared::default()
            };
            // Fields `{slot}:sec`, `{slot}:ok`, `{slot}:fail`: a slot counts if its second is
            // in the window.
            for (field, sec) in &counts {
                let Some(slot) = field.strip_suffix(":sec") else {
                    continue;
                };
                if *sec > second - window_secs && *sec <= second {
                    let n = |kind: &str| counts.get(&format!("{slot}:{kind}")).copied();
                    shared.ok += n("ok").unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
                    shared.failed += n("fail").unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
                }
            }
            h.set_cluster(shared);
        }
        Ok(())
    }

    /// Exchange health with the cluster twice a second until the process ends.
    pub fn spawn_health(self: Arc<Self>, gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                every.tick().await;
                let health = &gw.router.health;
                let window = (health.settings().unstable_window.as_secs().max(1) as i64).min(SLOTS);
                match self.exchange_health(health, window).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("sharing endpoint health through Redis again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!("cannot share endpoint health through Redis: {e:#}");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}
