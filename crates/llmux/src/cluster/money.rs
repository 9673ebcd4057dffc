//! Credits, key limits and rate limits decided once for all nodes, in Redis.
//!
//! Amounts are integer picodollars kept as Redis integers (64-bit, changed with HINCRBY) and
//! compared inside the scripts as decimal strings: Lua's numbers are doubles, exact only to
//! 2^53 picodollars ($9,007), so no amount is ever turned into one.
//!
//! - `avail:{account}` (field `amount`): a prepaid account's credits minus what is held for
//!   requests in flight. A reservation takes the request's worst case; settling gives back the
//!   difference with the actual cost. Built from the ledger's balance the first time a node
//!   needs it (and again if Redis loses it). Its `credited` field is the ledger's credited total
//!   (top-ups, refunds, adjustments) it includes: nodes compare it with the ledger when they
//!   see a new entry or load the account, and add the difference once, however many nodes do
//!   so and whoever wrote the entry (the CLI too).
//! - `spent:{key}:{window}` (field `amount`): a limited key's charges and holds in its limit
//!   window, the same way.
//! - `holds:{node}`: every hold a node has taken and not yet settled, so that the holds of a
//!   node that died are given back: each node keeps `alive:{node}` fresh, and the others
//!   release the holds of one whose `alive` key expired ([`Cluster::release_dead_nodes`]).
//!   Settling a hold that is no longer there (released, or lost with Redis) charges the cost
//!   only: the hold was never taken from the amount as it now stands.
//! - `reaped:{node}`: the holds given back that way, for a day, so that a node that was only
//!   cut off, and settles them once it reaches Redis again, still has its charges counted. A
//!   settlement retried after an attempt that may have reached Redis, whose hold is in neither,
//!   is taken as settled by that attempt (also when Redis lost everything in between: the
//!   amount was then rebuilt from the ledger, where the charge usually is already).
//! - `rpm:{key}`, `free:{key}`: sorted sets of request times (sliding minute); `tpm:{key}`:
//!   tokens per second; `freeday:{key}:{day}`: free-model requests that day.
//!
//! The scripts touch keys they compute (a dead node's holds), so the cluster's Redis is one
//! server (with replicas if wanted), not Redis Cluster.

use std::time::Duration;

use redis::Script;

use super::Cluster;
use crate::money::Money;

/// What a reservation asks of the cluster.
pub struct Ask<'a> {
    pub account: &'a str,
    pub key_hash: &'a str,
    /// A unique id for this request (the sliding windows' member).
    pub member: &'a str,
    pub now_ms: i64,
    /// Worst-case cost held against the account, if it is prepaid.
    pub credits: Option<Money>,
    /// Amount held against the key's limit, and the limit, if the key has one.
    pub limit: Option<(Money, Money)>,
    pub limit_window_start: i64,
    pub limit_window_ttl: Option<Duration>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    /// A free-model request, and the day's cap.
    pub free: Option<u64>,
}

/// The cluster's answer to a reservation.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Held,
    /// Not enough credits: what is available.
    Credits(Money),
    /// The key's limit: what is committed in the window.
    KeyLimit(Money),
    /// A rate limit: which (`rpm`, `tpm`, `free_minute`, `free_day`), the limit, and when a
    /// slot frees (Unix ms).
    Rate(String, u64, i64),
    /// The account's credits are not in Redis yet: load them from the ledger.
    NeedCredits,
    /// The key's window spending is not in Redis yet.
    NeedLimit,
}

/// The Redis keys a hold touches (kept to settle or release it).
#[derive(Debug, Clone)]
pub struct HoldKeys {
    avail: Option<String>,
    spent: Option<String>,
    tpm: String,
    has_tpm: bool,
    /// The hold's entry in this node's `holds` (its request's unique member).
    member: String,
}

/// What a finished request replaces its hold by.
#[derive(Debug, Clone, Copy)]
pub struct Settlement {
    pub credits_held: Money,
    pub charged: Money,
    pub limit_held: Money,
    pub limit_charged: Money,
    pub tokens: u64,
}

impl Settlement {
    /// Giving a hold back whole: nothing was spent.
    pub fn release(credits_held: Money, limit_held: Money) -> Self {
        Settlement {
            credits_held,
            charged: Money::ZERO,
            limit_held,
            limit_charged: Money::ZERO,
            tokens: 0,
        }
    }
}

const COMPARE: &str = r#"
-- Compare two decimal integers given as strings (either may be negative).
local function cmp(a, b)
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then if na then return -1 else return 1 end end
  local x, y = a, b
  if na then x = string.sub(a, 2); y = string.sub(b, 2) end
  x = string.match(x, '^0*(%d-)$'); y = string.match(y, '^0*(%d-)$')
  local r
  if #x ~= #y then
    if #x < #y then r = -1 else r = 1 end
  elseif x == y then r = 0
  elseif x < y then r = -1 else r = 1 end
  if na then r = -r end
  return r
end
"#;

const RESERVE: &str = r#"
-- KEYS: avail, spent, rpm, tpm, free, freeday, holds (this node's)
-- ARGV: now, member, credits ('' = not prepaid), limit_amount, limit_max_minus_amount,
--       limit_max ('' = no limit), rpm (''), tpm (''), free_cap ('' = not free), day_end,
--       window_ttl_ms ('' = none), -credits, the hold's record (how to give it back)
local now = tonumber(ARGV[1])
local since = now - 60000
if ARGV[9] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', since)
  if redis.call('ZCARD', KEYS[5]) >= 20 then
    local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
    return {'rate', 'free_minute', '20', tostring(tonumber(first[2]) + 60000)}
  end
  local used = tonumber(redis.call('GET', KEYS[6]) or '0')
  if used >= tonumber(ARGV[9]) then
    return {'rate', 'free_day', ARGV[9], ARGV[10]}
  end
end
if ARGV[7] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', since)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then
    local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    return {'rate', 'rpm', ARGV[7], tostring(tonumber(first[2]) + 60000)}
  end
end
if ARGV[8] ~= '' then
  local fields = redis.call('HGETALL', KEYS[4])
  local sum, oldest = 0, nil
  for i = 1, #fields, 2 do
    local sec = tonumber(fields[i])
    if sec * 1000 <= since then
      redis.call('HDEL', KEYS[4], fields[i])
    else
      sum = sum + tonumber(fields[i + 1])
      if oldest == nil or sec < oldest then oldest = sec end
    end
  end
  if sum >= tonumber(ARGV[8]) then
    return {'rate', 'tpm', ARGV[8], tostring((oldest + 60) * 1000)}
  end
end
if ARGV[6] ~= '' then
  local spent = redis.call('HGET', KEYS[2], 'amount')
  if not spent then return {'need_limit'} end
  if cmp(spent, ARGV[5]) > 0 or cmp(spent, ARGV[6]) >= 0 then
    return {'key_limit', spent}
  end
end
if ARGV[3] ~= '' then
  local avail = redis.call('HGET', KEYS[1], 'amount')
  if not avail then return {'need_credits'} end
  if cmp(avail, ARGV[3]) < 0 or cmp(avail, '0') <= 0 then
    return {'credits', avail}
  end
end
-- Every check passed: hold.
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[1], 'amount', ARGV[12]) end
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'amount', ARGV[4])
  if ARGV[11] ~= '' then redis.call('PEXPIRE', KEYS[2], ARGV[11]) end
end
if ARGV[3] ~= '' or ARGV[6] ~= '' then redis.call('HSET', KEYS[7], ARGV[2], ARGV[13]) end
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[3], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[3], 60000)
end
if ARGV[9] ~= '' then
  redis.call('ZADD', KEYS[5], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[5], 60000)
  redis.call('INCR', KEYS[6])
  redis.call('PEXPIREAT', KEYS[6], tonumber(ARGV[10]) + 3600000)
end
return {'held'}
"#;

const SETTLE: &str = r#"
-- KEYS: avail, spent, tpm, holds (this node's), reaped (this node's holds given back)
-- ARGV: credits_held - charged ('' = no credits held), -charged,
--       limit_charged - limit_held ('' = no limit held), limit_charged, tokens, second,
--       tpm (0/1), member, retry (1: an earlier attempt went unanswered)
-- A hold no longer registered (released as a dead node's, or lost with Redis) was not taken
-- from the amount as it now stands: only the charge is. Amounts that are gone are not
-- recreated (they are rebuilt from the ledger when next needed).
local held = redis.call('HDEL', KEYS[4], ARGV[8]) == 1
local reaped = not held and redis.call('HDEL', KEYS[5], ARGV[8]) == 1
-- Neither held nor given back, and an earlier attempt may have settled it: it is taken as
-- settled (charging it again would count it twice; Redis restarting in between is rarer).
if not held and not reaped and ARGV[9] == '1' then return 0 end
local function settle(key, back, charge)
  if back == '' or redis.call('EXISTS', key) == 0 then return end
  if held then
    redis.call('HINCRBY', key, 'amount', back)
  else
    redis.call('HINCRBY', key, 'amount', charge)
  end
end
settle(KEYS[1], ARGV[1], ARGV[2])
settle(KEYS[2], ARGV[3], ARGV[4])
if ARGV[7] == '1' and tonumber(ARGV[5]) > 0 then
  redis.call('HINCRBY', KEYS[3], ARGV[6], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], 120000)
end
return 1
"#;

const INIT: &str = r#"
-- KEYS: an amount (avail or spent). ARGV: amount, credited ('' = none), ttl_ms ('').
-- Unless another node already did.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'amount', ARGV[1])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'credited', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"#;

const RELEASE_DEAD: &str = r#"
-- KEYS: alive:{node}, holds:{node}, nodes, reaped:{node}. ARGV: node.
-- A node whose heartbeat expired: give back every hold it had (each record is
-- "avail\tcredits\tspent\t-limit", '' where none), once. Each is noted in `reaped` for a
-- day: the node may be alive after all (cut off from Redis), and still settle it.
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local holds = redis.call('HGETALL', KEYS[2])
for i = 1, #holds, 2 do
  local r = holds[i + 1]
  redis.call('HSET', KEYS[4], holds[i], '1')
  local f = {}
  for part in string.gmatch(r .. '\t', '([^\t]*)\t') do f[#f + 1] = part end
  if f[1] ~= '' and redis.call('EXISTS', f[1]) == 1 then
    redis.call('HINCRBY', f[1], 'amount', f[2])
  end
  if f[3] ~= '' and redis.call('EXISTS', f[3]) == 1 then
    redis.call('HINCRBY', f[3], 'amount', f[4])
  end
end
redis.call('DEL', KEYS[2])
if #holds > 0 then redis.call('PEXPIRE', KEYS[4], 86400000) end
redis.call('SREM', KEYS[3], ARGV[1])
return #holds / 2
"#;

const RECONCILE: &str = r#"
-- KEYS: avail. ARGV: the ledger's credited total (top-ups, refunds, adjustments).
-- Adds what was credited since the amount last counted, exactly (integer commands only).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'credited') or '0'
if old == ARGV[1] then return 0 end
redis.call('HINCRBY', KEYS[1], 'amount', ARGV[1])
if string.sub(old, 1, 1) == '-' then
  redis.call('HINCRBY', KEYS[1], 'amount', string.sub(old, 2))
elseif old ~= '0' then
  redis.call('HINCRBY', KEYS[1], 'amount', '-' .. old)
end
redis.call('HSET', KEYS[1], 'credited', ARGV[1])
return 1
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{COMPARE}\n{body}"))
}

fn opt(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl Cluster {
    /// The keys `a`'s hold touches (to reserve it, then settle or release it).
    pub fn hold_keys(&self, a: &Ask<'_>) -> HoldKeys {
        HoldKeys {
            avail: a.credits.map(|_| self.key(&["avail", a.account])),
            spent: a
                .limit
                .map(|_| self.key(&["spent", a.key_hash, &a.limit_window_start.to_string()])),
            tpm: self.key(&["tpm", a.key_hash]),
            has_tpm: a.tpm.is_some(),
            member: a.member.to_string(),
        }
    }

    /// Check and hold everything a request needs, atomically for all nodes.
    pub async fn reserve(&self, a: &Ask<'_>, keys: &HoldKeys) -> anyhow::Result<Answer> {
        let day = a.now_ms.div_euclid(crate::clock::DAY_MS);
        let (limit_amount, limit_max) = match a.limit {
            Some((amount, max)) => (Some(amount), Some(max)),
            None => (None, None),
        };
        // How to give the hold back if this node dies first.
        let record = format!(
            "{}\t{}\t{}\t{}",
            keys.avail.as_deref().unwrap_or_default(),
            opt(a.credits.map(|c| c.0)),
            keys.spent.as_deref().unwrap_or_default(),
            opt(limit_amount.map(|m| -m.0)),
        );
        let unused = || self.key(&["unused"]);
        let reply: Vec<String> = script(RESERVE)
            .key(keys.avail.clone().unwrap_or_else(unused))
            .key(keys.spent.clone().unwrap_or_else(unused))
            .key(self.key(&["rpm", a.key_hash]))
            .key(&keys.tpm)
            .key(self.key(&["free", a.key_hash]))
            .key(self.key(&["freeday", a.key_hash, &day.to_string()]))
            .key(self.key(&["holds", &self.node]))
            .arg(a.now_ms)
            .arg(a.member)
            .arg(opt(a.credits.map(|c| c.0)))
            .arg(opt(limit_amount.map(|m| m.0)))
            .arg(opt(limit_max
                .zip(limit_amount)
                .map(|(m, x)| m.0.saturating_sub(x.0))))
            .arg(opt(limit_max.map(|m| m.0)))
            .arg(opt(a.rpm))
            .arg(opt(a.tpm))
            .arg(opt(a.free))
            .arg((day + 1) * crate::clock::DAY_MS)
            .arg(opt(a.limit_window_ttl.map(|d| d.as_millis())))
            .arg(opt(a.credits.map(|c| -c.0)))
            .arg(record)
            .invoke_async(&mut self.conn())
            .await?;
        let money = |s: Option<&String>| Money(s.and_then(|s| s.parse().ok()).unwrap_or(0));
        let answer = match reply.first().map(String::as_str) {
            Some("held") => Answer::Held,
            Some("need_credits") => Answer::NeedCredits,
            Some("need_limit") => Answer::NeedLimit,
            Some("credits") => Answer::Credits(money(reply.get(1))),
            Some("key_limit") => Answer::KeyLimit(money(reply.get(1))),
            Some("rate") => Answer::Rate(
                reply.get(1).cloned().unwrap_or_default(),
                reply.get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
                reply
                    .get(3)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(a.now_ms),
            ),
            other => anyhow::bail!("unexpected reservation answer from Redis: {other:?}"),
        };
        Ok(answer)
    }

    /// Load an account's available credits unless another node already did: `available`
    /// is the ledger's balance less holds, `credited` the ledger's credited total read with it.
    pub async fn init_credits(
        &self,
        account: &str,
        available: Money,
        credited: Money,
    ) -> anyhow::Result<()> {
        self.init(
            self.key(&["avail", account]),
            available,
            Some(credited),
            None,
        )
        .await
    }

    /// Load a key's spending in its window unless another node already did.
    pub async fn init_limit(
        &self,
        key_hash: &str,
        window_start: i64,
        spent: Money,
        ttl: Option<Duration>,
    ) -> anyhow::Result<()> {
        let key = self.key(&["spent", key_hash, &window_start.to_string()]);
        self.init(key, spent, None, ttl).await
    }

    async fn init(
        &self,
        key: String,
        amount: Money,
        credited: Option<Money>,
        ttl: Option<Duration>,
    ) -> anyhow::Result<()> {
        let _: i64 = script(INIT)
            .key(key)
            .arg(amount.0)
            .arg(opt(credited.map(|c| c.0)))
            .arg(opt(ttl.map(|t| t.as_millis())))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Replace a hold by what was actually spent. `retry`: an earlier attempt went
    /// unanswered, so Redis may have run it.
    pub async fn settle(
        &self,
        keys: &HoldKeys,
        s: &Settlement,
        now_ms: i64,
        retry: bool,
    ) -> anyhow::Result<()> {
        let unused = || self.key(&["unused"]);
        let _: i64 = script(SETTLE)
            .key(keys.avail.clone().unwrap_or_else(unused))
            .key(keys.spent.clone().unwrap_or_else(unused))
            .key(&keys.tpm)
            .key(self.key(&["holds", &self.node]))
            .key(self.key(&["reaped", &self.node]))
            .arg(opt(keys
                .avail
                .as_ref()
                .map(|_| s.credits_held.saturating_sub(s.charged).0)))
            .arg(-s.charged.0)
            .arg(opt(keys
                .spent
                .as_ref()
                .map(|_| s.limit_charged.saturating_sub(s.limit_held).0)))
            .arg(s.limit_charged.0)
            .arg(s.tokens)
            .arg(now_ms.div_euclid(1000))
            .arg(if keys.has_tpm { "1" } else { "0" })
            .arg(&keys.member)
            .arg(if retry { "1" } else { "0" })
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Give back the holds of nodes that stopped beating (killed, or cut off from Redis for
    /// longer than [`super::ALIVE_FOR`]); how many holds.
    pub async fn release_dead_nodes(&self) -> anyhow::Result<u64> {
        let nodes_key = self.key(&["nodes"]);
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&nodes_key)
            .query_async(&mut self.conn())
            .await?;
        let mut released = 0;
        for node in nodes.iter().filter(|n| **n != self.node) {
            let n: i64 = script(RELEASE_DEAD)
                .key(self.key(&["alive", node]))
                .key(self.key(&["holds", node]))
                .key(&nodes_key)
                .key(self.key(&["reaped", node]))
                .arg(node)
                .invoke_async(&mut self.conn())
                .await?;
            if n > 0 {
                tracing::warn!("gave back {n} holds of node {node}, which stopped");
                released += n as u64;
            }
        }
        Ok(released)
    }

    /// Bring an account's available credits up to date with the ledger's credited total
    /// (top-ups made by the CLI or any node). Idempotent: every node may call it; returns
    /// whether anything changed.
    pub async fn reconcile_credits(&self, account: &str, credited: Money) -> anyhow::Result<bool> {
        let changed: i64 = script(RECONCILE)
            .key(self.key(&["avail", account]))
            .arg(credited.0)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(changed == 1)
    }

    /// The account's available credits as Redis holds them (tests and diagnostics).
    pub async fn available(&self, account: &str) -> anyhow::Result<Option<Money>> {
        let v: Option<i64> = redis::cmd("HGET")
            .arg(self.key(&["avail", account]))
            .arg("amount")
            .query_async(&mut self.conn())
            .await?;
        Ok(v.map(Money))
    }
}
