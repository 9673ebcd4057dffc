//! `llmux accounts ...`, `llmux credits ...`, `llmux byok ...`, `llmux ledger ...`.

use std::io::Read;

use clap::Subcommand;
use serde_json::json;

use crate::billing::admin;
use crate::billing::byok::{ByokMode, Sealer};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::money::Money;
use crate::storage::Store;

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Create an account.
    Create {
        #[arg(long)]
        name: String,
        /// Credits in USD (makes the account's balance enforced).
        #[arg(long)]
        credits: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List accounts with their balances.
    List {
        #[arg(long)]
        json: bool,
    },
    /// An account's balance, totals, keys and own provider keys.
    Show { id: String },
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

#[derive(Subcommand, Debug)]
pub enum ByokCommand {
    /// Store an account's own key for a provider. The key is read from standard input (or
    /// from the environment variable named by --key-env), never from the command line.
    Set {
        account: String,
        provider: String,
        #[arg(long, value_parser = ["prioritized", "fallback"], default_value = "prioritized")]
        mode: String,
        #[arg(long)]
        key_env: Option<String>,
    },
    /// The account's own provider keys (never the keys themselves).
    List { account: String },
    /// Remove an account's key for a provider.
    Remove { account: String, provider: String },
}

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// Check that the ledger and the generation records agree: every charge has its records
    /// and equals the sum of their costs, every costed record is charged once, no prepaid
    /// balance is negative.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

pub async fn accounts(config: &Config, cmd: AccountsCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    match cmd {
        AccountsCommand::Create {
            name,
            credits,
            json,
        } => {
            let credits = credits.as_deref().map(Money::parse_usd).transpose()?;
            let a = admin::create_account(&store, &name, credits, "cli").await?;
            if json {
                println!(
                    "{}",
                    json!({"id": a.id, "name": a.name, "prepaid": a.prepaid, "balance": store.balance(&a.id).await?.to_string()})
                );
            } else {
                println!("{}", a.id);
            }
        }
        AccountsCommand::List { json } => {
            let mut out = Vec::new();
            for a in store.accounts().await? {
                out.push((store.balance(&a.id).await?, a));
            }
            if json {
                let v: Vec<_> = out
                    .iter()
                    .map(|(b, a)| json!({"id": a.id, "name": a.name, "prepaid": a.prepaid, "balance": b.to_string()}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<30}  {:<24}  {:<8}  BALANCE (USD)",
                    "ID", "NAME", "PREPAID"
                );
                for (b, a) in out {
                    println!("{:<30}  {:<24}  {:<8}  {b}", a.id, a.name, a.prepaid);
                }
            }
        }
        AccountsCommand::Show { id } => {
            let Some(a) = store.account(&id).await? else {
                anyhow::bail!("account {id} does not exist");
            };
            let (credited, used) = store.credit_totals(&id).await?;
            println!("account   {} ({})", a.id, a.name);
            println!("prepaid   {}", a.prepaid);
            println!("balance   ${}", store.balance(&id).await?);
            println!("credited  ${credited}");
            println!("used      ${used}");
            for k in store.keys(Some(&id)).await? {
                let kind = if k.management {
                    "management"
                } else {
                    "inference"
                };
                println!(
                    "key       {} {} ({kind}{})",
                    k.hash,
                    k.name,
                    if k.disabled { ", disabled" } else { "" }
                );
            }
            for b in store.byok_keys(&id).await? {
                println!("byok      {} ({})", b.provider, b.mode);
            }
        }
    }
    store.close().await;
    Ok(())
}

pub async fn credits(config: &Config, cmd: CreditsCommand) -> anyhow::Result<()> {
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

pub async fn byok(config: &Config, cmd: ByokCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    match cmd {
        ByokCommand::Set {
            account,
            provider,
            mode,
            key_env,
        } => {
            let secret = match key_env {
                Some(var) => std::env::var(&var)
                    .map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))?,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                }
            };
            let secret = secret.trim();
            if secret.is_empty() {
                anyhow::bail!("no key given (pipe it on standard input, or use --key-env)");
            }
            let sealer = Sealer::from_env(&config.billing.secrets_key_env)?;
            let catalog = Catalog::build(config, None)?;
            let mode = ByokMode::parse(&mode).expect("validated by clap");
            admin::set_byok(
                &store,
                sealer.as_ref(),
                &catalog,
                &account,
                &provider,
                secret,
                mode,
            )
            .await?;
            println!("stored {account}'s key for {provider} ({})", mode.as_str());
        }
        ByokCommand::List { account } => {
            for b in store.byok_keys(&account).await? {
                println!(
                    "{}  {}  updated {}",
                    b.provider,
                    b.mode,
                    crate::clock::iso8601(b.updated_at)
                );
            }
        }
        ByokCommand::Remove { account, provider } => {
            if !store.delete_byok(&account, &provider).await? {
                anyhow::bail!("{account} has no key for {provider}");
            }
            println!("removed {account}'s key for {provider}");
        }
    }
    store.close().await;
    Ok(())
}

pub async fn ledger(config: &Config, cmd: LedgerCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    let LedgerCommand::Verify { json } = cmd;
    let audit = store.audit().await?;
    store.close().await;
    if json {
        println!(
            "{}",
            json!({
                "clean": audit.is_clean(),
                "records": audit.records,
                "charges": audit.charges,
                "charged_records": audit.charged_records,
                "charges_without_record": audit.charges_without_record,
                "records_without_charge": audit.records_without_charge,
                "mismatched_charges": audit.mismatched_charges,
                "negative_prepaid_accounts": audit.negative_prepaid_accounts.iter()
                    .map(|(a, b)| json!({"account": a, "balance": b.to_string()})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "{} generation records, {} charged by {} charges",
            audit.records, audit.charged_records, audit.charges
        );
        println!(
            "charges without a record:        {}",
            audit.charges_without_record
        );
        println!(
            "costed records without a charge: {}",
            audit.records_without_charge
        );
        println!(
            "charges differing from the cost: {}",
            audit.mismatched_charges
        );
        for (a, b) in &audit.negative_prepaid_accounts {
            println!("negative prepaid balance: {a} ${b}");
        }
    }
    if !audit.is_clean() {
        anyhow::bail!("the ledger and the records disagree");
    }
    Ok(())
}
