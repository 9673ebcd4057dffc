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

#[derive(Debug, thiserror::Error)]
pub enum ByokError {
    #[error(
        "BYOK needs a secrets key: set the environment variable named by billing.secrets_key_env (LLMUX_SECRETS_KEY by default)"
    )]
    Unavailable,
    #[error("no provider {0:?} is configured")]
    UnknownProvider(String),
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// Store an account's own key for a provider, sealed.
pub async fn set_byok(
    store: &Store,
    sealer: Option<&super::byok::Sealer>,
    catalog: &crate::catalog::Catalog,
    account_id: &str,
    provider: &str,
    secret: &str,
    mode: super::byok::ByokMode,
) -> Result<(), ByokError> {
    let sealer = sealer.ok_or(ByokError::Unavailable)?;
    if catalog.provider(provider).is_none() {
        return Err(ByokError::UnknownProvider(provider.to_string()));
    }
    if store.account(account_id).await?.is_none() {
        return Err(ByokError::Storage(anyhow::anyhow!(
            "account {account_id} does not exist"
        )));
    }
    store
        .put_byok(account_id, provider, &sealer.seal(secret), mode.as_str())
        .await?;
    Ok(())
}

/// Create an account, optionally with credits.
pub async fn create_account(
    store: &Store,
    name: &str,
    credits: Option<Money>,
    node: &str,
) -> anyhow::Result<AccountRow> {
    if name.trim().is_empty() {
        bail!("an account needs a name");
    }
    let account = store
        .create_account(&keys::random_id("acct_"), name, credits.is_some())
        .await?;
    if let Some(c) = credits {
        add_credits(store, &account.id, c, Some("initial credits"), node).await?;
    }
    Ok(store.account(&account.id).await?.unwrap_or(account))
}
