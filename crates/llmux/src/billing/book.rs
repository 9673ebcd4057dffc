//! The in-memory book: cached keys and account balances, reservations, settlement.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use super::keys;
use crate::money::Money;
use crate::storage::{KeyRow, Store};

/// How often changes made outside this process are picked up.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// An account's money, as this node sees it.
pub struct Account {
    pub id: String,
    prepaid: RwLock<bool>,
    book: Mutex<Book>,
    /// Ledger entries up to this id are already in `book.balance`.
    loaded_through_id: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Book {
    balance: Money,
    reserved: Money,
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
}

/// An authenticated key and its account.
pub struct KeyContext {
    pub key: KeyRow,
    pub account: Arc<Account>,
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// Not enough credits for the worst case of this request.
    #[error("Insufficient credits")]
    InsufficientCredits { available: Money, needed: Money },
}

/// Credits held for one in-flight request. Dropping it without [`Reservation::settle`]
/// releases the hold.
pub struct Reservation {
    account: Arc<Account>,
    amount: Money,
    open: bool,
}

impl Reservation {
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// Replace the hold by the actual charge.
    pub fn settle(mut self, actual: Money) {
        let mut b = self.account.book.lock();
        b.reserved = b.reserved.saturating_sub(self.amount);
        b.balance = b.balance.saturating_sub(actual);
        self.open = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            let mut b = self.account.book.lock();
            b.reserved = b.reserved.saturating_sub(self.amount);
        }
    }
}

struct SyncMarks {
    keys_since_ms: i64,
    ledger_after_id: i64,
}

pub struct Billing {
    store: Store,
    node: String,
    keys: RwLock<HashMap<String, Arc<KeyContext>>>,
    accounts: RwLock<HashMap<String, Arc<Account>>>,
    marks: Mutex<SyncMarks>,
    load_lock: tokio::sync::Mutex<()>,
}

impl Billing {
    pub async fn new(store: Store, node: String) -> anyhow::Result<Arc<Billing>> {
        let ledger_after_id = store.ledger_max_id().await?;
        Ok(Arc::new(Billing {
            store,
            node,
            keys: RwLock::new(HashMap::new()),
            accounts: RwLock::new(HashMap::new()),
            marks: Mutex::new(SyncMarks {
                keys_since_ms: crate::clock::now_ms(),
                ledger_after_id,
            }),
            load_lock: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Resolve a presented key. Served from memory after the first use of a key.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<KeyContext>, AuthError> {
        let hash = keys::hash(presented);
        let cached = self.keys.read().get(&hash).cloned();
        let ctx = match cached {
            Some(c) => c,
            None => self.load_key(&hash).await?,
        };
        let k = &ctx.key;
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
        let ctx = Arc::new(KeyContext { key: row, account });
        self.keys.write().insert(hash.to_string(), ctx.clone());
        Ok(ctx)
    }

    /// The cached account, loading its balance from the ledger on first use.
    pub async fn account(&self, id: &str) -> anyhow::Result<Arc<Account>> {
        if let Some(a) = self.accounts.read().get(id) {
            return Ok(a.clone());
        }
        let row = self
            .store
            .account(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("account {id} does not exist"))?;
        // Read the high-water mark first: entries after it are applied by the sync task; the
        // balance read afterwards may already include some of them, which `loaded_through_id`
        // would double count, so take the balance and the mark together.
        let (balance, through) = self.store.balance_with_mark(id).await?;
        let acct = Arc::new(Account {
            id: row.id.clone(),
            prepaid: RwLock::new(row.prepaid),
            book: Mutex::new(Book {
                balance,
                reserved: Money::ZERO,
            }),
            loaded_through_id: through,
        });
        Ok(self.accounts.write().entry(row.id).or_insert(acct).clone())
    }

    /// Hold `amount` against the account. Accounts that are not prepaid only record usage;
    /// prepaid ones need the amount available, and a zero or negative balance blocks every
    /// request (even one to a free model).
    pub fn reserve(
        &self,
        account: &Arc<Account>,
        amount: Money,
    ) -> Result<Reservation, ReserveError> {
        let prepaid = account.prepaid();
        let mut b = account.book.lock();
        if prepaid {
            let available = b.balance.saturating_sub(b.reserved);
            if b.balance <= Money::ZERO || available < amount || available <= Money::ZERO {
                return Err(ReserveError::InsufficientCredits {
                    available,
                    needed: amount,
                });
            }
        }
        b.reserved = b.reserved.saturating_add(amount);
        Ok(Reservation {
            account: account.clone(),
            amount,
            open: true,
        })
    }

    /// Forget a key (after it was changed through this node), so the next use reloads it.
    pub fn invalidate_key(&self, hash: &str) {
        self.keys.write().remove(hash);
    }

    /// Pick up changes made elsewhere: key updates, and ledger entries written by other
    /// processes (top-ups from the CLI, charges from other nodes).
    pub async fn sync_once(&self) -> anyhow::Result<()> {
        let (since, after) = {
            let m = self.marks.lock();
            (m.keys_since_ms, m.ledger_after_id)
        };
        let started = crate::clock::now_ms();
        let changed = self.store.keys_updated_since(since).await?;
        if !changed.is_empty() {
            let mut keys = self.keys.write();
            for row in changed {
                if let Some(ctx) = keys.get(&row.hash)
                    && ctx.key != row
                {
                    let account = ctx.account.clone();
                    keys.insert(row.hash.clone(), Arc::new(KeyContext { key: row, account }));
                }
            }
        }
        let mut last = after;
        loop {
            let entries = self.store.ledger_after(last, 1000).await?;
            let n = entries.len();
            for e in entries {
                last = e.id;
                if e.node == self.node {
                    continue;
                }
                let acct = self.accounts.read().get(&e.account_id).cloned();
                if let Some(a) = acct {
                    if e.id > a.loaded_through_id {
                        let mut b = a.book.lock();
                        b.balance = b.balance.saturating_add(e.amount);
                    }
                    if e.kind == crate::storage::LedgerKind::TopUp && !a.prepaid() {
                        // Credits bought make an account prepaid (see `admin::add_credits`).
                        if let Some(row) = self.store.account(&a.id).await? {
                            *a.prepaid.write() = row.prepaid;
                        }
                    }
                }
            }
            if n < 1000 {
                break;
            }
        }
        let mut m = self.marks.lock();
        // Look back a little: a key written in the same millisecond as the last poll is not lost.
        m.keys_since_ms = started - 1000;
        m.ledger_after_id = last;
        Ok(())
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
