//! `llmux-bench`: tools for llmux's benchmarks (see `bench/README.md`).
//!
//! `llmux-bench records` generates synthetic generation records (and their rollups) into a
//! database, for the rankings benchmark at 10 and 100 million records.

mod json;
mod metering;
mod records;
mod streams;

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
    /// Streams through llmux against the upstream directly: added time to first token,
    /// per-chunk cost, memory and CPU with many slow streams.
    Streams(streams::Args),
    /// Generation records per second through the metering writer's path.
    Metering(metering::Args),
    /// serde_json and sonic-rs side by side on the documents llmux parses and writes.
    Json(json::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    llmux::init_tls();
    match Cli::parse().command {
        Command::Records(args) => records::run(args).await,
        Command::Streams(args) => streams::run(args).await,
        Command::Metering(args) => metering::run(args).await,
        Command::Json(args) => json::run(args),
    }
}
