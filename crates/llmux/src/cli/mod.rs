//! The command line: `llmux serve`, `keys`, `credits`, `sim`. Every subcommand reads the same
//! configuration (`--config FILE` or `LLMUX_CONFIG`, accepted before or after the
//! subcommand's own flags), so the CLI works on the database `serve` uses.

mod accounts;
mod analytics;
mod keys;
mod migrate;
mod serve;
mod sim;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "llmux",
    version,
    about = "A self-hostable OpenRouter: one OpenAI-compatible API over many LLM providers"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "LLMUX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (`sqlite://FILE` or `postgres://...`), overriding the configuration.
    #[arg(long, global = true, env = "LLMUX_DATABASE")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Create, list, disable and delete API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Create and inspect accounts.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// Add credits to an account.
    #[command(subcommand)]
    Credits(accounts::CreditsCommand),
    /// Accounts' own provider keys (BYOK).
    #[command(subcommand)]
    Byok(accounts::ByokCommand),
    /// Check the books.
    #[command(subcommand)]
    Ledger(accounts::LedgerCommand),
    /// Rankings by model, author, origin, provider or app (own traffic or imported market
    /// data); `rankings import FILE --source NAME` loads OpenRouter's public dataset.
    Rankings(analytics::RankingsArgs),
    /// Rebuild or verify the rollups that rankings and activity read.
    #[command(subcommand)]
    Rollups(analytics::RollupsCommand),
    /// An account's or key's spend, tokens and requests.
    Activity(analytics::ActivityArgs),
    /// Apply schema migrations, or move an installation to another database
    /// (`--from sqlite://... --to postgres://...`), verified by counts and balances.
    Migrate(migrate::MigrateArgs),
    /// Send a demo workload (many models, apps and keys) through a running gateway.
    DemoTraffic(analytics::DemoTrafficArgs),
    /// Run a simulated provider (OpenAI protocol) for tests, benchmarks and demos.
    Sim(sim::SimArgs),
}

/// Log to stderr; `LLMUX_LOG` (or `RUST_LOG`) filters. The server logs at `info` by default,
/// the other commands only warnings.
pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Serve(_) | Command::Sim(_) | Command::DemoTraffic(_) => "info,sqlx=warn",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMUX_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn load(config: &Option<PathBuf>, database: &Option<String>) -> anyhow::Result<Config> {
    Config::load(config.as_deref(), None, database.as_deref())
}

/// Raise the soft limit on open files to the hard one, as nginx's `worker_rlimit_nofile` and
/// Go's runtime do: each proxied stream holds two sockets, and the usual soft limit of 1,024
/// would refuse connections from about 500 concurrent streams on.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!("open files limit: {n}"),
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::init_tls();
    if matches!(cli.command, Command::Serve(_) | Command::Sim(_)) {
        raise_open_files_limit();
    }
    match cli.command {
        Command::Serve(args) => {
            let config = Config::load(
                cli.config.as_deref(),
                args.listen.as_deref(),
                cli.database.as_deref(),
            )?;
            serve::serve(config, args.demo, args.demo_rps).await
        }
        Command::Keys(cmd) => keys::run(&load(&cli.config, &cli.database)?, cmd).await,
        Command::Accounts(cmd) => accounts::accounts(&load(&cli.config, &cli.database)?, cmd).await,
        Command::Credits(cmd) => accounts::credits(&load(&cli.config, &cli.database)?, cmd).await,
        Command::Byok(cmd) => accounts::byok(&load(&cli.config, &cli.database)?, cmd).await,
        Command::Ledger(cmd) => accounts::ledger(&load(&cli.config, &cli.database)?, cmd).await,
        Command::Rankings(args) => {
            analytics::rankings(&load(&cli.config, &cli.database)?, args).await
        }
        Command::Rollups(cmd) => analytics::rollups(&load(&cli.config, &cli.database)?, cmd).await,
        Command::Activity(args) => {
            analytics::activity(&load(&cli.config, &cli.database)?, args).await
        }
        Command::Migrate(args) => migrate::run(&load(&cli.config, &cli.database)?, args).await,
        Command::DemoTraffic(args) => analytics::demo_traffic(args).await,
        Command::Sim(args) => sim::run(args).await,
    }
}
