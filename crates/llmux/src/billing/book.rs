//! The in-memory book: cached keys and accounts, balances, key limits, rate windows and
//! BYOK keys; reservations and settlement.
//!
//! Exactness under concurrency comes from locks held only for arithmetic: a reservation
//! checks and holds, in one critical section, the key's rate windows, its limit and the
//! account's balance, so concurrent requests can never together pass a bound.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::byok::{ByokKey, ByokMode, Sealer};
use super::keys;
use crate::clock::DAY_MS;
use crate::cluster::Cluster;
use crate::cluster::money::{Answer, Ask, HoldKeys, Settlement};
use crate::money::Money;
use crate::storage::{KeyRow, LedgerEntry, LedgerKind, Store};

/// How often changes made outside this process are picked up.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);
/// Rate limits count over this sliding window.
pub const RATE_WINDOW_MS: i64 = 60_000;
/// OpenRouter's limits for free (`:free`) models: per key, per minute and per UTC day (more
/// per day once the account has bought at least `FREE_CREDITS_THRESHOLD` of credits).
pub const FREE_PER_MINUTE: u64 = 20;
pub const FREE_PER_DAY: u64 = 50;
pub const FREE_PER_DAY_WITH_CREDITS: u64 = 1000;
pub const FREE_CREDITS_THRESHOLD: Money = Money(10 * crate::money::PICO_PER_USD);

/// An account's money, as this node sees it.
pub struct Account {
    pub id: String,
    prepaid: RwLock<bool>,
    book: Mutex<Book>,
    byok: RwLock<Vec<Arc<ByokKey>>>,
    /// Whether this node compared the cluster's credits with the ledger since loading it.
    cluster_reconciled: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Book {
    balance: Money,
    reserved: Money,
    /// Credits ever added (for the free-model daily allowance).
    credited: Money,
}

impl Account {
    pub fn prepaid(&self) -> bool {
        *self.prepaid.read()
    }

    /// Settled balance (ledger sum as known here, including charges not yet written).
    pub fn balance(&self) -> Money {
        self.book.lock().balance
    }

    /// Balance minus open reservations.
    pub fn available(&self) -> Money {
        let b = self.book.lock();
        b.balance.saturating_sub(b.reserved)
    }

    /// The account's own provider keys.
    pub fn byok(&self) -> Vec<Arc<ByokKey>> {
        self.byok.read().clone()
    }
}

/// A key's spending in its limit window and its recent traffic. It outlives updates to the
/// key's row, so a renamed or re-limited key keeps its counts.
#[derive(Default)]
pub struct KeyUsage {
    limit: Mutex<LimitBook>,
    requests: Mutex<MinuteCounts>,
    tokens: Mutex<MinuteCounts>,
    free_requests: Mutex<MinuteCounts>,
    /// (UTC day number, free-model requests that day).
    free_day: Mutex<(i64, u64)>,
    /// Whether `free_day` includes the day's requests recorded before this process knew the
    /// key ([`Billing::count_free_today`]).
    free_day_counted: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct LimitBook {
    window_start: i64,
    spent: Money,
    reserved: Money,
}

/// When a key's limit window (`daily`, `weekly`, `monthly`, else lifetime) started.
pub fn window_start(reset: Option<&str>, now_ms: i64) -> i64 {
    let (day, week, month) = crate::server::routes::key::period_starts(now_ms);
    match reset {
        Some("daily") => day,
        Some("weekly") => week,
        Some("monthly") => month,
        _ => i64::MIN,
    }
}

impl KeyUsage {
    /// Spent in the current window, as known here.
    pub fn spent(&self, key: &KeyRow) -> Money {
        let mut l = self.limit.lock();
        roll(&mut l, key, crate::clock::now_ms());
        l.spent
    }
}

fn roll(l: &mut LimitBook, key: &KeyRow, now: i64) {
    let start = window_start(key.limit_reset.as_deref(), now);
    if start > l.window_start {
        // A new window: what was spent belongs to the old one.
        l.window_start = start;
        l.spent = Money::ZERO;
    }
}

/// A sliding minute's counts (requests, tokens) in buckets of [`BUCKET_MS`]: the time and
/// memory a request costs stay the same at any rate. A log of every request had held 1.7
/// million entries for a key serving 28,000 requests a second, and kept the memory once the
/// traffic stopped; a tokens-per-minute check summed all of them for every request.
#[derive(Default)]
struct MinuteCounts {
    /// (bucket number, count) for the buckets in the window that counted anything, oldest
    /// first.
    buckets: VecDeque<(i64, u64)>,
    total: u64,
}

/// The windows' granularity: what was counted leaves the window between 59.9 and 60 seconds
/// later.
const BUCKET_MS: i64 = 100;
const WINDOW_BUCKETS: i64 = RATE_WINDOW_MS / BUCKET_MS;

impl MinuteCounts {
    /// The total over the minute before `now`.
    fn total(&mut self, now: i64) -> u64 {
        let oldest_kept = now.div_euclid(BUCKET_MS) - WINDOW_BUCKETS + 1;
        while let Some(&(b, n)) = self.buckets.front()
            && b < oldest_kept
        {
            self.buckets.pop_front();
            self.total -= n;
        }
        self.total
    }

    fn add(&mut self, now: i64, n: u64) {
        self.total(now);
        let b = now.div_euclid(BUCKET_MS);
        match self.buckets.back_mut() {
            Some((last, count)) if *last >= b => *count += n,
            _ => self.buckets.push_back((b, n)),
        }
        self.total += n;
    }

    /// When the oldest count leaves the window (`now` if there is none).
    fn reset_ms(&self, now: i64) -> i64 {
        self.buckets
            .front()
            .map_or(now, |(b, _)| (b + WINDOW_BUCKETS) * BUCKET_MS)
    }
}

/// An authenticated key and its account.
pub struct KeyContext {
    pub key: KeyRow,
    pub account: Arc<Account>,
    pub usage: Arc<KeyUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("No auth credentials found")]
    Missing,
    #[error("Invalid API key")]
    Invalid,
    #[error("This API key is disabled")]
    Disabled,
    #[error("This API key has expired")]
    Expired,
    #[error("Management keys cannot be used for inference")]
    ManagementKey,
    #[error("storage unavailable: {0}")]
    Storage(String),
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    Requests,
    Tokens,
    FreeRequests,
    FreeRequestsPerDay,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// Not enough credits for the worst case of this request.
    #[error("Insufficient credits")]
    InsufficientCredits { available: Money, needed: Money },
    /// The key's spending limit for its window is reached.
    #[error("Key limit exceeded")]
    KeyLimitExceeded { limit: Money, remaining: Money },
    /// The key's requests or tokens per minute are used up.
    #[error("Rate limit exceeded")]
    RateLimited {
        unit: RateUnit,
        limit: u64,
        /// When capacity frees up (Unix ms).
        reset_ms: i64,
    },
    /// The cluster's shared limits cannot be reached (Redis): refused, never guessed.
    #[error("Billing is unavailable")]
    Unavailable,
}

/// Credits (and key limit) held for one in-flight request. Dropping it without
/// [`Reservation::settle`] releases the holds.
pub struct Reservation {
    account: Arc<Account>,
    usage: Arc<KeyUsage>,
    credits: Money,
    limit_hold: Money,
    open: bool,
    /// The cluster's copy of the hold (several nodes), settled or released with this one.
    shared: Option<(Arc<Cluster>, HoldKeys)>,
}

impl Reservation {
    pub fn credits(&self) -> Money {
        self.credits
    }

    /// Replace the holds by the actual charge (`charged`, against the balance), the amount
    /// that counts toward the key limit, and the tokens that count toward its rate limit.
    pub fn settle(mut self, charged: Money, limit_amount: Money, tokens: u64) {
        {
            let mut b = self.account.book.lock();
            b.reserved = b.reserved.saturating_sub(self.credits);
            b.balance = b.balance.saturating_sub(charged);
        }
        {
            let mut l = self.usage.limit.lock();
            l.reserved = l.reserved.saturating_sub(self.limit_hold);
            l.spent = l.spent.saturating_add(limit_amount);
        }
        if tokens > 0 {
            let now = crate::clock::now_ms();
            self.usage.tokens.lock().add(now, tokens);
        }
        if let Some((cluster, keys)) = self.shared.take() {
            let settlement = Settlement {
                credits_held: self.credits,
                charged,
                limit_held: self.limit_hold,
                limit_charged: limit_amount,
                tokens,
            };
            cluster.spawn_settlement(settle_shared(cluster.clone(), keys, settlement));
        }
        self.open = false;
    }
}

/// Settle (or release) a hold in the cluster, retrying until Redis takes it: until then the
/// difference stays held (never given away), so a Redis outage errs on the safe side. A
/// settlement that charges something is never given up while the process lives (its hold
/// would be given back whole once this node is gone, and the charge lost from the cluster's
/// credits); a release is given up after ten attempts, as that giving back is all it does.
async fn settle_shared(cluster: Arc<Cluster>, keys: HoldKeys, settlement: Settlement) {
    let charges = settlement.charged != Money::ZERO
        || settlement.limit_charged != Money::ZERO
        || settlement.tokens > 0;
    let mut delay = Duration::from_millis(50);
    // Whether an attempt went unanswered after it was sent (timed out, or its connection
    // dropped): Redis may have run it, and the retry must not settle it twice.
    let mut may_have_run = false;
    for attempt in 1u32.. {
        let Err(e) = cluster
            .settle(&keys, &settlement, crate::clock::now_ms(), may_have_run)
            .await
        else {
            if attempt > 1 {
                tracing::info!("a reservation was settled in Redis at attempt {attempt}");
            }
            return;
        };
        may_have_run |= crate::cluster::may_have_run(&e);
        if !charges && attempt >= 10 {
            tracing::error!(
                "a reservation could not be released in Redis; it stays held until this node \
                 stops (another node then gives it back)"
            );
            return;
        }
        // The first failure, then about once a minute.
        if attempt % 12 == 1 {
            tracing::warn!("settling a reservation in Redis failed, retrying in {delay:?}: {e:#}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            let mut b = self.account.book.lock();
            b.reserved = b.reserved.saturating_sub(self.credits);
            drop(b);
            let mut l = self.usage.limit.lock();
            l.reserved = l.reserved.saturating_sub(self.limit_hold);
            if let Some((cluster, keys)) = self.shared.take() {
                let release = Settlement::release(self.credits, self.limit_hold);
                cluster.spawn_settlement(settle_shared(cluster.clone(), keys, release));
            }
        }
    }
}

struct SyncMarks {
    keys_since_ms: i64,
    byok_since_ms: i64,
    /// Every ledger entry up to this id is behind the readings: counted, this node's own, or
    /// given up on (an id not seen for [`GAP_WAIT`]).
    ledger_after_id: i64,
    /// Entries above it already counted (by a reading, or by loading their account), kept
    /// until the mark passes them.
    counted_above: std::collections::BTreeSet<i64>,
    /// Ids above it not seen yet, and since when: on PostgreSQL, taken by a transaction that
    /// has not committed (its entry will be seen later) or that rolled back (never).
    gaps: std::collections::BTreeMap<i64, Instant>,
    last_run: Option<Instant>,
}

/// What a ledger entry adds to its account's credited total.
fn credit(e: &LedgerEntry) -> Money {
    if e.kind != LedgerKind::Charge && e.amount > Money::ZERO {
        e.amount
    } else {
        Money::ZERO
    }
}

/// How long a ledger id not seen yet holds the readings' mark back before it is given up on
/// (its transaction rolled back). A transaction writing generation records commits in well
/// under a second.
const GAP_WAIT: Duration = Duration::from_secs(10);

pub struct Billing {
    store: Store,
    node: String,
    sealer: Option<Sealer>,
    keys: RwLock<foldhash::HashMap<String, Arc<KeyContext>>>,
    accounts: RwLock<foldhash::HashMap<String, Arc<Account>>>,
    marks: tokio::sync::Mutex<SyncMarks>,
    load_lock: tokio::sync::Mutex<()>,
    /// The cluster's Redis, when several nodes share the database.
    cluster: std::sync::OnceLock<Arc<Cluster>>,
}

/// Free-model requests a key may make a day: more once its account has bought credits.
fn free_per_day(account: &Account) -> u64 {
    if account.book.lock().credited >= FREE_CREDITS_THRESHOLD {
        FREE_PER_DAY_WITH_CREDITS
    } else {
        FREE_PER_DAY
    }
}

impl Billing {
    pub async fn new(
        store: Store,
        node: String,
        sealer: Option<Sealer>,
    ) -> anyhow::Result<Arc<Billing>> {
        let ledger_after_id = store.ledger_max_id().await?;
        let now = crate::clock::now_ms();
        Ok(Arc::new(Billing {
            store,
            node,
            sealer,
            keys: RwLock::default(),
            accounts: RwLock::default(),
            marks: tokio::sync::Mutex::new(SyncMarks {
                keys_since_ms: now,
                byok_since_ms: now,
                ledger_after_id,
                counted_above: Default::default(),
                gaps: Default::default(),
                last_run: None,
            }),
            load_lock: tokio::sync::Mutex::new(()),
            cluster: std::sync::OnceLock::new(),
        }))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_ref()
    }

    /// Resolve a presented key. Served from memory after the first use of a key.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<KeyContext>, AuthError> {
        let hash = keys::hash_hex(presented);
        let cached = self.keys.read().get(hash.as_str()).cloned();
        let ctx = match cached {
            Some(c) => c,
            None => self.load_key(hash.as_str()).await?,
        };
        let k = &ctx.key;
        if k.deleted_at.is_some() {
            return Err(AuthError::Invalid);
        }
        if k.disabled {
            return Err(AuthError::Disabled);
        }
        if k.expires_at.is_some_and(|e| e <= crate::clock::now_ms()) {
            return Err(AuthError::Expired);
        }
        Ok(ctx)
    }

    async fn load_key(&self, hash: &str) -> Result<Arc<KeyContext>, AuthError> {
        let storage = |e: anyhow::Error| AuthError::Storage(e.to_string());
        let _guard = self.load_lock.lock().await;
        if let Some(c) = self.keys.read().get(hash) {
            return Ok(c.clone());
        }
        let row = self
            .store
            .key(hash)
            .await
            .map_err(storage)?
            .ok_or(AuthError::Invalid)?;
        let account = self.account(&row.account_id).await.map_err(storage)?;
        let usage = Arc::new(KeyUsage::default());
        // What the key spent in its window is read from its records only if it has a limit
        // (a key given one later is read then, in `apply_key_rows`): summing every record of a
        // key without a lifetime window took 76 ms on 45,000 records, and every key's first
        // request after a restart waited behind it. Free-model requests are counted on the
        // key's first free-model request (`count_free_today`).
        if row.limit.is_some() {
            let (start, spent) = self
                .spent_in_window(&row, crate::clock::now_ms())
                .await
                .map_err(storage)?;
            let mut l = usage.limit.lock();
            l.window_start = start;
            l.spent = spent;
        }
        let ctx = Arc::new(KeyContext {
            key: row,
            account,
            usage,
        });
        self.keys.write().insert(hash.to_string(), ctx.clone());
        Ok(ctx)
    }

    /// When the key's limit window started, and what the key spent in it (its BYOK usage
    /// included if it says so), from its records.
    async fn spent_in_window(&self, key: &KeyRow, now: i64) -> anyhow::Result<(i64, Money)> {
        let start = window_start(key.limit_reset.as_deref(), now);
        let (spent, byok) = self.store.key_usage_since(&key.hash, start).await?;
        let spent = match key.include_byok_in_limit {
            true => spent.saturating_add(byok),
            false => spent,
        };
        Ok((start, spent))
    }

    /// Read the key's free-model requests of the day from the records, once per key and
    /// process, before its first free-model request here. Without it (the database
    /// unreachable) the day's count starts from this process's own requests.
    pub async fn count_free_today(&self, ctx: &KeyContext) {
        if ctx.usage.free_day_counted.load(Ordering::Acquire) {
            return;
        }
        let now = crate::clock::now_ms();
        let day = now.div_euclid(DAY_MS);
        match self
            .store
            .free_requests_since(&ctx.key.hash, day * DAY_MS)
            .await
        {
            Ok(n) => {
                let mut free_day = ctx.usage.free_day.lock();
                // Counted once: a concurrent first request may have counted and reserved.
                if !ctx.usage.free_day_counted.swap(true, Ordering::AcqRel) {
                    let here = if free_day.0 == day { free_day.1 } else { 0 };
                    *free_day = (day, n.max(here));
                }
            }
            Err(e) => tracing::warn!("counting today's free-model requests of a key: {e:#}"),
        }
    }

    /// The cached account, loading its balance and BYOK keys on first use.
    pub async fn account(&self, id: &str) -> anyhow::Result<Arc<Account>> {
        if let Some(a) = self.accounts.read().get(id) {
            return Ok(a.clone());
        }
        // Loaded while no reading of the ledger runs (one running would pass entries of the
        // account's before it is in the map), from every entry that can be read now: those
        // above the readings' mark are noted as counted, so that no reading counts them
        // again. An entry read later (committed later) is counted by the reading then.
        let mut marks = self.marks.lock().await;
        if let Some(a) = self.accounts.read().get(id) {
            return Ok(a.clone());
        }
        let (mut balance, mut credited) = self
            .store
            .account_totals_through(id, marks.ledger_after_id)
            .await?;
        for e in self
            .store
            .account_entries_after(id, marks.ledger_after_id)
            .await?
        {
            balance = balance.saturating_add(e.amount);
            credited = credited.saturating_add(credit(&e));
            marks.counted_above.insert(e.id);
        }
        // Read after the entries: a top-up among them has made the account prepaid here.
        let row = self
            .store
            .account(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("account {id} does not exist"))?;
        let acct = Arc::new(Account {
            id: row.id.clone(),
            prepaid: RwLock::new(row.prepaid),
            book: Mutex::new(Book {
                balance,
                reserved: Money::ZERO,
                credited,
            }),
            byok: RwLock::new(self.open_byok(id).await?),
            cluster_reconciled: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(self.accounts.write().entry(row.id).or_insert(acct).clone())
    }

    async fn open_byok(&self, account_id: &str) -> anyhow::Result<Vec<Arc<ByokKey>>> {
        let rows = self.store.byok_keys(account_id).await?;
        let mut out = Vec::new();
        for r in rows {
            let Some(sealer) = &self.sealer else {
                tracing::warn!(account = %account_id, provider = %r.provider, "a BYOK key is stored but no secrets key is configured; it is not used");
                continue;
            };
            match (sealer.open(&r.sealed), ByokMode::parse(&r.mode)) {
                (Ok(secret), Some(mode)) => {
                    out.push(Arc::new(ByokKey::new(r.provider, mode, secret)))
                }
                (Err(e), _) => {
                    tracing::warn!(account = %account_id, provider = %r.provider, "a BYOK key cannot be opened: {e}")
                }
                (_, None) => {
                    tracing::warn!(account = %account_id, provider = %r.provider, "unknown BYOK mode {}", r.mode)
                }
            }
        }
        Ok(out)
    }

    /// Check and hold, atomically: the key's rate limits, `limit_amount` against its spending
    /// limit, and `credits` against the account's balance (prepaid accounts only; a zero or
    /// negative balance blocks every request, even to a free model).
    pub fn reserve(
        &self,
        ctx: &KeyContext,
        credits: Money,
        limit_amount: Money,
        free: bool,
    ) -> Result<Reservation, ReserveError> {
        let now = crate::clock::now_ms();
        let key = &ctx.key;
        let usage = &ctx.usage;
        let mut free_minute = usage.free_requests.lock();
        let mut free_day = usage.free_day.lock();
        if free {
            if free_minute.total(now) >= FREE_PER_MINUTE {
                return Err(ReserveError::RateLimited {
                    unit: RateUnit::FreeRequests,
                    limit: FREE_PER_MINUTE,
                    reset_ms: free_minute.reset_ms(now),
                });
            }
            let day = now.div_euclid(DAY_MS);
            if free_day.0 != day {
                *free_day = (day, 0);
            }
            let cap = free_per_day(&ctx.account);
            if free_day.1 >= cap {
                return Err(ReserveError::RateLimited {
                    unit: RateUnit::FreeRequestsPerDay,
                    limit: cap,
                    reset_ms: (day + 1) * DAY_MS,
                });
            }
        }
        let mut requests = usage.requests.lock();
        if let Some(rpm) = key.rpm.filter(|r| *r >= 0)
            && requests.total(now) >= rpm as u64
        {
            return Err(ReserveError::RateLimited {
                unit: RateUnit::Requests,
                limit: rpm as u64,
                reset_ms: requests.reset_ms(now),
            });
        }
        if let Some(tpm) = key.tpm.filter(|t| *t >= 0) {
            let mut tokens = usage.tokens.lock();
            if tokens.total(now) >= tpm as u64 {
                return Err(ReserveError::RateLimited {
                    unit: RateUnit::Tokens,
                    limit: tpm as u64,
                    reset_ms: tokens.reset_ms(now),
                });
            }
        }
        let mut limit = usage.limit.lock();
        roll(&mut limit, key, now);
        if let Some(max) = key.limit {
            let committed = limit.spent.saturating_add(limit.reserved);
            if committed.saturating_add(limit_amount) > max || committed >= max {
                return Err(ReserveError::KeyLimitExceeded {
                    limit: max,
                    remaining: max.saturating_sub(committed).max(Money::ZERO),
                });
            }
        }
        let prepaid = ctx.account.prepaid();
        let mut book = ctx.account.book.lock();
        if prepaid {
            let available = book.balance.saturating_sub(book.reserved);
            if book.balance <= Money::ZERO || available < credits || available <= Money::ZERO {
                return Err(ReserveError::InsufficientCredits {
                    available,
                    needed: credits,
                });
            }
        }
        book.reserved = book.reserved.saturating_add(credits);
        limit.reserved = limit.reserved.saturating_add(limit_amount);
        requests.add(now, 1);
        if free {
            free_minute.add(now, 1);
            free_day.1 += 1;
        }
        Ok(Reservation {
            account: ctx.account.clone(),
            usage: ctx.usage.clone(),
            credits,
            limit_hold: limit_amount,
            open: true,
            shared: None,
        })
    }

    /// [`Billing::reserve`] for several nodes: the cluster decides every limit, atomically
    /// for all of them; this node keeps its own book in step (for what it reports). Fails
    /// closed: without Redis, nothing is reserved.
    pub async fn reserve_shared(
        &self,
        cluster: &Arc<Cluster>,
        ctx: &KeyContext,
        credits: Money,
        limit_amount: Money,
        free: bool,
    ) -> Result<Reservation, ReserveError> {
        let now = crate::clock::now_ms();
        let key = &ctx.key;
        let prepaid = ctx.account.prepaid();
        let window_start = window_start(key.limit_reset.as_deref(), now);
        let window_ttl = match key.limit_reset.as_deref() {
            Some("daily") => Some(Duration::from_secs(2 * 86_400)),
            Some("weekly") => Some(Duration::from_secs(8 * 86_400)),
            Some("monthly") => Some(Duration::from_secs(32 * 86_400)),
            _ => None,
        };
        let free_cap = free.then(|| free_per_day(&ctx.account));
        let member = format!("{now}-{:016x}", rand::random::<u64>());
        let ask = Ask {
            account: &ctx.account.id,
            key_hash: &key.hash,
            member: &member,
            now_ms: now,
            credits: prepaid.then_some(credits),
            limit: key.limit.map(|max| (limit_amount, max)),
            limit_window_start: window_start,
            limit_window_ttl: window_ttl,
            rpm: key.rpm.filter(|r| *r >= 0),
            tpm: key.tpm.filter(|t| *t >= 0),
            free: free_cap,
        };
        if ask.credits.is_none()
            && ask.limit.is_none()
            && ask.rpm.is_none()
            && ask.tpm.is_none()
            && ask.free.is_none()
        {
            // Nothing to decide for all nodes (a postpaid account's unlimited key): this node's
            // book alone, and no Redis needed.
            return self.reserve(ctx, credits, limit_amount, free);
        }
        let unavailable = |e: anyhow::Error| {
            tracing::warn!("reserving through Redis failed: {e:#}");
            ReserveError::Unavailable
        };
        if prepaid && !ctx.account.cluster_reconciled.swap(true, Ordering::Relaxed) {
            // Credits added while this node was not watching the ledger (or down).
            self.reconcile_shared(cluster, &ctx.account.id)
                .await
                .map_err(|e| {
                    ctx.account
                        .cluster_reconciled
                        .store(false, Ordering::Relaxed);
                    unavailable(e)
                })?;
        }
        // At most twice: once more after loading what Redis did not have yet.
        for _ in 0..3 {
            let keys = cluster.hold_keys(&ask);
            let answer = match cluster.reserve(&ask, &keys).await {
                Ok(answer) => answer,
                Err(e) => {
                    // Asked but not answered: Redis may have taken the hold all the same.
                    // Give back whatever it took (a hold it never took is left alone).
                    if crate::cluster::may_have_run(&e) {
                        let release = Settlement::release(credits, limit_amount);
                        cluster.spawn_settlement(settle_shared(cluster.clone(), keys, release));
                    }
                    return Err(unavailable(e));
                }
            };
            match answer {
                Answer::Held => {
                    {
                        let mut b = ctx.account.book.lock();
                        b.reserved = b.reserved.saturating_add(credits);
                    }
                    {
                        let mut l = ctx.usage.limit.lock();
                        l.reserved = l.reserved.saturating_add(limit_amount);
                    }
                    ctx.usage.requests.lock().add(now, 1);
                    return Ok(Reservation {
                        account: ctx.account.clone(),
                        usage: ctx.usage.clone(),
                        credits,
                        limit_hold: limit_amount,
                        open: true,
                        shared: Some((cluster.clone(), keys)),
                    });
                }
                Answer::NeedCredits => {
                    // The ledger's balance. Holds taken before (if Redis lost the amount)
                    // settle by their charge alone (see `cluster::money`).
                    let (credited, spent) = self
                        .store
                        .credit_totals(&ctx.account.id)
                        .await
                        .map_err(unavailable)?;
                    let available = credited.saturating_sub(spent);
                    cluster
                        .init_credits(&ctx.account.id, available, credited)
                        .await
                        .map_err(unavailable)?;
                    ctx.account
                        .cluster_reconciled
                        .store(true, Ordering::Relaxed);
                }
                Answer::NeedLimit => {
                    let (spent, byok) = self
                        .store
                        .key_usage_since(&key.hash, window_start.max(0))
                        .await
                        .map_err(unavailable)?;
                    let spent = if key.include_byok_in_limit {
                        spent.saturating_add(byok)
                    } else {
                        spent
                    };
                    cluster
                        .init_limit(&key.hash, window_start, spent, window_ttl)
                        .await
                        .map_err(unavailable)?;
                }
                Answer::Credits(available) => {
                    return Err(ReserveError::InsufficientCredits {
                        available,
                        needed: credits,
                    });
                }
                Answer::KeyLimit(committed) => {
                    let max = key.limit.unwrap_or(Money::ZERO);
                    return Err(ReserveError::KeyLimitExceeded {
                        limit: max,
                        remaining: max.saturating_sub(committed).max(Money::ZERO),
                    });
                }
                Answer::Rate(unit, limit, reset_ms) => {
                    let unit = match unit.as_str() {
                        "tpm" => RateUnit::Tokens,
                        "free_minute" => RateUnit::FreeRequests,
                        "free_day" => RateUnit::FreeRequestsPerDay,
                        _ => RateUnit::Requests,
                    };
                    return Err(ReserveError::RateLimited {
                        unit,
                        limit,
                        reset_ms,
                    });
                }
            }
        }
        Err(unavailable(anyhow::anyhow!(
            "Redis kept losing the reservation's keys"
        )))
    }

    /// Share limits, reservations and credits with other nodes through `cluster` from now on.
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Make the cluster's available credits for `account` count every credit in the ledger.
    async fn reconcile_shared(&self, cluster: &Cluster, account: &str) -> anyhow::Result<()> {
        let (credited, _) = self.store.credit_totals(account).await?;
        cluster.reconcile_credits(account, credited).await?;
        Ok(())
    }

    /// Apply a key's row after it was changed through this node (a deleted key is
    /// forgotten). Its usage counts are kept.
    pub async fn refresh_key(&self, hash: &str) -> anyhow::Result<()> {
        let Some(row) = self.store.key(hash).await? else {
            self.keys.write().remove(hash);
            return Ok(());
        };
        self.apply_key_rows(vec![row]).await
    }

    /// Apply changed rows to the keys loaded here, keeping their usage counts. A key given a
    /// limit, a new window or BYOK usage to count has what it spent in the window read from
    /// its records first (keys without a limit are loaded without it), so the new terms
    /// apply to what it spent.
    async fn apply_key_rows(&self, rows: Vec<KeyRow>) -> anyhow::Result<()> {
        let now = crate::clock::now_ms();
        let mut spent = HashMap::new();
        for row in &rows {
            let new_terms = row.limit.is_some()
                && self.keys.read().get(&row.hash).is_some_and(|c| {
                    c.key.limit.is_none()
                        || c.key.limit_reset != row.limit_reset
                        || c.key.include_byok_in_limit != row.include_byok_in_limit
                });
            if new_terms {
                spent.insert(row.hash.clone(), self.spent_in_window(row, now).await?);
            }
        }
        let mut keys = self.keys.write();
        for row in rows {
            if let Some(ctx) = keys.get(&row.hash)
                && ctx.key != row
            {
                if let Some((start, spent)) = spent.remove(&row.hash) {
                    let mut l = ctx.usage.limit.lock();
                    l.window_start = start;
                    l.spent = spent;
                }
                let updated = Arc::new(KeyContext {
                    account: ctx.account.clone(),
                    usage: ctx.usage.clone(),
                    key: row,
                });
                keys.insert(updated.key.hash.clone(), updated);
            }
        }
        Ok(())
    }

    /// Reload an account's BYOK keys (after they were changed through this node).
    pub async fn refresh_byok(&self, account_id: &str) -> anyhow::Result<()> {
        let acct = self.accounts.read().get(account_id).cloned();
        if let Some(a) = acct {
            *a.byok.write() = self.open_byok(account_id).await?;
        }
        Ok(())
    }

    /// Count another node's (or the CLI's) ledger entry here: in the account's balance, and a
    /// charge toward its key's limit. What can fail is read first, so that an entry is either
    /// counted whole or not at all.
    async fn count_ledger_entry(&self, e: &LedgerEntry) -> anyhow::Result<()> {
        let acct = self.accounts.read().get(&e.account_id).cloned();
        let Some(a) = acct else {
            self.count_toward_limit(e);
            return Ok(());
        };
        // Credits bought make an account prepaid (see `admin::add_credits`).
        let prepaid = match e.kind == LedgerKind::TopUp && !a.prepaid() {
            true => self.store.account(&a.id).await?.map(|row| row.prepaid),
            false => None,
        };
        {
            let mut b = a.book.lock();
            b.balance = b.balance.saturating_add(e.amount);
            b.credited = b.credited.saturating_add(credit(e));
        }
        if let Some(prepaid) = prepaid {
            *a.prepaid.write() = prepaid;
        }
        if e.kind != LedgerKind::Charge {
            // Until the cluster's credits have it: the account's next reservation brings it
            // there if this sync does not.
            a.cluster_reconciled.store(false, Ordering::Relaxed);
        }
        self.count_toward_limit(e);
        Ok(())
    }

    /// Another node's charge counts toward the key's limit here too.
    fn count_toward_limit(&self, e: &LedgerEntry) {
        if e.kind == LedgerKind::Charge
            && let Some(ctx) = e
                .key_hash
                .as_ref()
                .and_then(|h| self.keys.read().get(h).cloned())
        {
            let mut l = ctx.usage.limit.lock();
            if e.created_at >= l.window_start {
                l.spent = l.spent.saturating_add(Money(-e.amount.0));
            }
        }
    }

    /// Pick up changes made elsewhere: key updates, BYOK keys, and ledger entries written by
    /// other processes (top-ups from the CLI, charges from other nodes).
    pub async fn sync_once(&self) -> anyhow::Result<()> {
        let mut marks = self.marks.lock().await;
        let started = crate::clock::now_ms();
        let changed = self.store.keys_updated_since(marks.keys_since_ms).await?;
        if !changed.is_empty() {
            self.apply_key_rows(changed).await?;
        }
        let byok_changed = self.store.byok_updated_since(marks.byok_since_ms).await?;
        let mut accounts_to_reload: Vec<String> =
            byok_changed.into_iter().map(|r| r.account_id).collect();
        accounts_to_reload.dedup();
        for a in accounts_to_reload {
            self.refresh_byok(&a).await?;
        }
        // Read up to the current end. This node's own entries (most of them, under load) are
        // not sent, only their ids, to see which ids are missing: on PostgreSQL an entry can
        // commit after one with a higher id, so the mark stays below a missing id (for at
        // most GAP_WAIT) and the entries above it already counted are remembered.
        let end = self.store.ledger_max_id().await?;
        let seen: std::collections::HashSet<i64> = self
            .store
            .ledger_ids_between(marks.ledger_after_id, end)
            .await?
            .into_iter()
            .collect();
        let mut credited_accounts = Vec::new();
        let mut from = marks.ledger_after_id;
        loop {
            let entries = self
                .store
                .ledger_between(from, end, 1000, &self.node)
                .await?;
            let n = entries.len();
            for e in entries {
                from = e.id;
                if marks.counted_above.contains(&e.id) || e.node == self.node {
                    continue;
                }
                self.count_ledger_entry(&e).await?;
                // Counted: a sync cut short (an error, or a caller that stopped waiting)
                // skips it next time instead of counting it again.
                marks.counted_above.insert(e.id);
                if e.kind != LedgerKind::Charge && !credited_accounts.contains(&e.account_id) {
                    credited_accounts.push(e.account_id);
                }
            }
            if n < 1000 {
                break;
            }
        }
        let now = Instant::now();
        let mut after = marks.ledger_after_id;
        for id in after + 1..=end {
            let behind = seen.contains(&id)
                || marks.counted_above.contains(&id)
                || marks.gaps.entry(id).or_insert(now).elapsed().ge(&GAP_WAIT);
            if behind && after == id - 1 {
                after = id;
            }
        }
        if after > marks.ledger_after_id {
            marks.ledger_after_id = after;
            marks.counted_above = marks.counted_above.split_off(&(after + 1));
            marks.gaps = marks.gaps.split_off(&(after + 1));
        }
        if let Some(cluster) = self.cluster.get() {
            // Top-ups (from the CLI or any node) reach the cluster's credits. Every node does
            // this; the script adds each credit once. One that fails here is done by the
            // account's next reservation (`count_ledger_entry` marked it).
            for account in &credited_accounts {
                if let Err(e) = self.reconcile_shared(cluster, account).await {
                    tracing::warn!("bringing a top-up to the cluster's credits: {e:#}");
                }
            }
        }
        // Look back a little: a row written in the same millisecond as the last poll is not lost.
        marks.keys_since_ms = started - 1000;
        marks.byok_since_ms = started - 1000;
        marks.last_run = Some(Instant::now());
        Ok(())
    }

    /// Sync now unless a sync ran in the last few milliseconds: used before refusing a
    /// request for lack of credits, so a top-up is usable at once.
    pub async fn sync_if_stale(&self) {
        let fresh = {
            let m = self.marks.lock().await;
            m.last_run
                .is_some_and(|t| t.elapsed() < Duration::from_millis(20))
        };
        if !fresh && let Err(e) = self.sync_once().await {
            tracing::warn!("billing sync failed: {e:#}");
        }
    }

    /// Run [`Billing::sync_once`] every [`SYNC_INTERVAL`] until the process ends.
    pub fn spawn_sync(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SYNC_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.sync_once().await {
                    tracing::warn!("billing sync failed (will retry): {e:#}");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_keep_only_their_last_minute() {
        let mut w = MinuteCounts::default();
        // A thousand in the first second, a hundred a millisecond apart.
        for t in 0..1000 {
            w.add(t, 1 + (t as u64 % 2));
        }
        assert_eq!(w.total(999), 1500, "all within the minute");
        assert_eq!(
            w.reset_ms(999),
            RATE_WINDOW_MS,
            "the oldest leaves after a minute"
        );
        // At 60.5 s, what came in the first 600 ms has left (up to a bucket early); the rest
        // leaves 100 ms at a time.
        assert_eq!(w.total(RATE_WINDOW_MS + 500), 600);
        assert_eq!(w.reset_ms(RATE_WINDOW_MS + 500), RATE_WINDOW_MS + 600);
        w.add(RATE_WINDOW_MS + 500, 7);
        assert_eq!(w.total(RATE_WINDOW_MS + 899), 157);
        assert_eq!(w.total(RATE_WINDOW_MS + 999), 7);
        assert_eq!(
            w.total(2 * RATE_WINDOW_MS + 500),
            0,
            "all gone a minute later"
        );
        assert_eq!(
            w.reset_ms(2 * RATE_WINDOW_MS + 500),
            2 * RATE_WINDOW_MS + 500
        );

        // Memory stays bounded however many are counted: a bucket per 100 ms at most.
        for t in 0..1_000_000 {
            w.add(10 * RATE_WINDOW_MS + t / 10, 1);
        }
        assert_eq!(w.buckets.len(), WINDOW_BUCKETS as usize);
        assert_eq!(w.total(10 * RATE_WINDOW_MS + 99_999), 600_000);
    }
}
