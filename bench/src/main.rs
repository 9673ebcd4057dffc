//! `llmux-bench`: tools for llmux's benchmarks (see `bench/README.md`).
//!
//! `llmux-bench records` generates synthetic generation records (and their rollups) into a
//! database, for the rankings benchmark at 10 and 100 million records.

mod records;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "llmux-bench", about = "Data generators for llmux's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate synthetic generation records, with their ledger charges and rollups.
    Records(records::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    llmux::init_tls();
    match Cli::parse().command {
        Command::Records(args) => records::run(args).await,
    }
}
