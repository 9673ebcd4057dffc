//! `llmux keys ...` and `llmux credits ...`.

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
    /// List keys.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a key (it stops working within a second).
    Disable { hash: String },
    /// Enable a disabled key.
    Enable { hash: String },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A name for the key.
    #[arg(long)]
    pub name: String,
    /// Add the key to this existing account (default: a new account of its own).
    #[arg(long)]
    pub account: Option<String>,
    /// Credits in USD to add to the key's account (makes the balance enforced).
    #[arg(long)]
    pub credits: Option<String>,
    /// Print JSON (`key`, `hash`, `account`, ...).
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CreditsCommand {
    /// Add credits (USD) to an account.
    Add {
        account: String,
        #[arg(allow_negative_numbers = true)]
        usd: String,
        #[arg(long)]
        note: Option<String>,
    },
}

pub async fn run_keys(config: &Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    match cmd {
        KeysCommand::Create(a) => {
            let credits = a.credits.as_deref().map(Money::parse_usd).transpose()?;
            let created = admin::create_key(
                &store,
                &KeySpec {
                    name: a.name,
                    account: a.account,
                    credits,
                    ..Default::default()
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
                    "credits": credits.map(|c| c.to_string()),
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
        KeysCommand::List { json } => {
            let keys = store.keys(None).await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({"hash": k.hash, "name": k.name, "label": k.label, "account": k.account_id,
                               "disabled": k.disabled, "management": k.management,
                               "created_at": crate::clock::iso8601(k.created_at)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<64}  {:<20}  {:<30}  {:<8}  ACCOUNT",
                    "HASH", "NAME", "LABEL", "STATE"
                );
                for k in keys {
                    let state = if k.disabled { "disabled" } else { "active" };
                    println!(
                        "{:<64}  {:<20}  {:<30}  {:<8}  {}",
                        k.hash, k.name, k.label, state, k.account_id
                    );
                }
            }
        }
        KeysCommand::Disable { hash } | KeysCommand::Enable { hash } if hash.is_empty() => {
            anyhow::bail!("a key hash is required")
        }
        KeysCommand::Disable { hash } => set_disabled(&store, &hash, true).await?,
        KeysCommand::Enable { hash } => set_disabled(&store, &hash, false).await?,
    }
    store.close().await;
    Ok(())
}

async fn set_disabled(store: &Store, hash: &str, disabled: bool) -> anyhow::Result<()> {
    let update = KeyUpdate {
        disabled: Some(disabled),
        ..Default::default()
    };
    match store.update_key(hash, &update).await? {
        Some(k) => {
            println!(
                "key {} ({}) {}",
                k.label,
                k.hash,
                if disabled { "disabled" } else { "enabled" }
            );
            Ok(())
        }
        None => anyhow::bail!("no key with hash {hash}"),
    }
}

pub async fn run_credits(config: &Config, cmd: CreditsCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    match cmd {
        CreditsCommand::Add { account, usd, note } => {
            let amount = Money::parse_usd(&usd)?;
            admin::add_credits(&store, &account, amount, note.as_deref(), "cli").await?;
            let balance = store.balance(&account).await?;
            println!("added ${amount} to {account}; balance ${balance}");
        }
    }
    store.close().await;
    Ok(())
}
