//! Operations on accounts, keys and credits, shared by the CLI and the management API.

use anyhow::bail;

use super::keys;
use crate::money::Money;
use crate::storage::{AccountRow, KeyRow, LedgerEntry, LedgerKind, NewKey, Store};

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    pub name: String,
    /// Existing account; None creates an account of the key's own.
    pub account: Option<String>,
    /// Credits to add to the account (making it prepaid).
    pub credits: Option<Money>,
    pub limit: Option<Money>,
    pub limit_reset: Option<String>,
    pub include_byok_in_limit: bool,
    pub expires_at: Option<i64>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub management: bool,
}

/// A created key: the secret (shown once) and its stored row.
pub struct CreatedKey {
    pub key: String,
    pub row: KeyRow,
    pub account: AccountRow,
}

pub async fn create_key(store: &Store, spec: &KeySpec, node: &str) -> anyhow::Result<CreatedKey> {
    if spec.name.trim().is_empty() {
        bail!("a key needs a name");
    }
    if let Some(r) = &spec.limit_reset
        && !matches!(r.as_str(), "daily" | "weekly" | "monthly")
    {
        bail!("limit_reset must be daily, weekly or monthly");
    }
    if spec.limit.is_some_and(|l| l.is_negative()) {
        bail!("limit must not be negative");
    }
    let account = match &spec.account {
        Some(id) => match store.account(id).await? {
            Some(a) => a,
            None => bail!("account {id} does not exist"),
        },
        None => {
            store
                .create_account(
                    &keys::random_id("acct_"),
                    &spec.name,
                    spec.credits.is_some(),
                )
                .await?
        }
    };
    let key = keys::generate();
    let row = store
        .insert_key(&NewKey {
            hash: keys::hash(&key),
            account_id: account.id.clone(),
            name: spec.name.clone(),
            label: keys::label(&key),
            management: spec.management,
            limit: spec.limit,
            limit_reset: spec.limit_reset.clone(),
            include_byok_in_limit: spec.include_byok_in_limit,
            expires_at: spec.expires_at,
            rpm: spec.rpm,
            tpm: spec.tpm,
        })
        .await?;
    let account = match spec.credits {
        Some(c) => {
            add_credits(store, &account.id, c, Some("initial credits"), node).await?;
            store.account(&account.id).await?.unwrap_or(account)
        }
        None => account,
    };
    Ok(CreatedKey { key, row, account })
}

/// Add credits to an account (which makes it prepaid: its balance is enforced from now on).
pub async fn add_credits(
    store: &Store,
    account_id: &str,
    amount: Money,
    note: Option<&str>,
    node: &str,
) -> anyhow::Result<LedgerEntry> {
    if amount <= Money::ZERO {
        bail!("the amount must be positive");
    }
    let Some(account) = store.account(account_id).await? else {
        bail!("account {account_id} does not exist");
    };
    if !account.prepaid {
        store.set_account_prepaid(account_id, true).await?;
    }
    store
        .append_ledger(account_id, LedgerKind::TopUp, amount, note, node)
        .await
}
