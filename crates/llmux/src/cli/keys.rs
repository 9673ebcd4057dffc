//! `llmux keys ...`

use clap::{Args, Subcommand};
use serde_json::json;

use crate::billing::admin::{self, KeySpec};
use crate::config::Config;
use crate::money::Money;
use crate::storage::{KeyUpdate, Store};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key (printed once; only its hash is stored).
    Create(CreateArgs),
    /// List keys (of one account, or all).
    List {
        #[arg(long)]
        account: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a key (it stops working within a second).
    Disable { hash: String },
    /// Enable a disabled key.
    Enable { hash: String },
    /// Delete a key (it stops working within a second; its history stays).
    Delete { hash: String },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A name for the key.
    #[arg(long)]
    pub name: String,
    /// Add the key to this existing account (default: a new account of its own).
    #[arg(long)]
    pub account: Option<String>,
    /// Credits in USD to add to the key's account (makes its balance enforced).
    #[arg(long)]
    pub credits: Option<String>,
    /// Spending limit in USD for this key (per --limit-reset window, else for its lifetime).
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<String>,
    /// When the limit starts over: daily, weekly (from Monday) or monthly, midnight UTC.
    #[arg(long, value_parser = ["daily", "weekly", "monthly"])]
    pub limit_reset: Option<String>,
    /// Count usage through the account's own provider keys toward the limit.
    #[arg(long)]
    pub include_byok_in_limit: bool,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<u32>,
    /// Expiry, as an RFC 3339 date-time (2027-01-01T00:00:00Z).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// A management key: administers the account's keys, cannot call models.
    #[arg(long)]
    pub management: bool,
    /// Print JSON (`key`, `hash`, `account`, ...).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: &Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    let result = run_on(&store, cmd).await;
    store.close().await;
    result
}

async fn run_on(store: &Store, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create(a) => {
            let credits = a.credits.as_deref().map(Money::parse_usd).transpose()?;
            let limit = a.limit.as_deref().map(Money::parse_usd).transpose()?;
            let expires_at = a
                .expires_at
                .as_deref()
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map(|d| d.timestamp_millis())
                        .map_err(|_| {
                            anyhow::anyhow!("--expires-at {t:?} is not an RFC 3339 date-time")
                        })
                })
                .transpose()?;
            let created = admin::create_key(
                store,
                &KeySpec {
                    name: a.name,
                    account: a.account,
                    credits,
                    limit,
                    limit_reset: a.limit_reset,
                    include_byok_in_limit: a.include_byok_in_limit,
                    expires_at,
                    rpm: a.rpm.map(i64::from),
                    tpm: a.tpm.map(i64::from),
                    management: a.management,
                },
                "cli",
            )
            .await?;
            if a.json {
                let out = json!({
                    "key": created.key,
                    "hash": created.row.hash,
                    "name": created.row.name,
                    "label": created.row.label,
                    "account": created.account.id,
                    "management": created.row.management,
                    "credits": credits.map(|c| c.to_string()),
                    "limit": limit.map(|c| c.to_string()),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{}", created.key);
                eprintln!(
                    "key {} (hash {}) created in account {}; it is shown only once",
                    created.row.label, created.row.hash, created.account.id
                );
            }
        }
        KeysCommand::List { account, json } => {
            let keys = store.keys(account.as_deref()).await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({"hash": k.hash, "name": k.name, "label": k.label, "account": k.account_id,
                               "disabled": k.disabled, "management": k.management,
                               "limit": k.limit.map(|l| l.to_string()), "limit_reset": k.limit_reset,
                               "rpm": k.rpm, "tpm": k.tpm,
                               "created_at": crate::clock::iso8601(k.created_at)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<64}  {:<20}  {:<28}  {:<10}  ACCOUNT",
                    "HASH", "NAME", "LABEL", "STATE"
                );
                for k in keys {
                    let state = match (k.disabled, k.management) {
                        (true, _) => "disabled",
                        (false, true) => "management",
                        (false, false) => "active",
                    };
                    println!(
                        "{:<64}  {:<20}  {:<28}  {:<10}  {}",
                        k.hash, k.name, k.label, state, k.account_id
                    );
                }
            }
        }
        KeysCommand::Disable { hash } => set_disabled(store, &hash, true).await?,
        KeysCommand::Enable { hash } => set_disabled(store, &hash, false).await?,
        KeysCommand::Delete { hash } => {
            if !store.delete_key(&hash).await? {
                anyhow::bail!("no key with hash {hash}");
            }
            println!("key {hash} deleted");
        }
    }
    Ok(())
}

async fn set_disabled(store: &Store, hash: &str, disabled: bool) -> anyhow::Result<()> {
    let update = KeyUpdate {
        disabled: Some(disabled),
        ..Default::default()
    };
    match store.key(hash).await? {
        Some(k) if k.deleted_at.is_none() => {
            store.update_key(hash, &update).await?;
            println!(
                "key {} ({}) {}",
                k.label,
                k.hash,
                if disabled { "disabled" } else { "enabled" }
            );
            Ok(())
        }
        _ => anyhow::bail!("no key with hash {hash}"),
    }
}
