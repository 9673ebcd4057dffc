//! `llmux migrate`: apply schema migrations to the configured database, or, with `--from` and
//! `--to`, move a whole installation (say, a single node's SQLite file to the cluster's
//! PostgreSQL), showing progress and checking counts, balances and totals at the end.

use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::storage::copy::TABLES;
use crate::storage::{Store, redact};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The installation to copy (`sqlite://FILE` or `postgres://...`).
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Where to copy it: a database that is new or empty (its schema is created).
    #[arg(long, requires = "from")]
    pub to: Option<String>,
}

pub async fn run(config: &Config, args: MigrateArgs) -> anyhow::Result<()> {
    let (Some(from), Some(to)) = (&args.from, &args.to) else {
        // Opening applies every pending migration.
        let store = Store::open(&config.database_url).await?;
        println!("{}: schema up to date", redact(&config.database_url));
        store.close().await;
        return Ok(());
    };
    let source = Store::open(from).await?;
    let dest = Store::open(to).await?;
    for (table, _) in TABLES {
        let n = dest.row_count(table).await?;
        anyhow::ensure!(
            n == 0,
            "{} is not empty ({n} rows in {table}); migrate into a new database",
            redact(to)
        );
    }
    let started = Instant::now();
    println!("copying {} to {}", redact(from), redact(to));
    for (table, order) in TABLES {
        let total = source.row_count(table).await?.max(0) as u64;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:<16} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, eta {eta}",
            )?
            .progress_chars("=> "),
        );
        bar.set_message(table.to_string());
        let copied = source
            .copy_table(&dest, table, order, |n| bar.set_position(n))
            .await?;
        bar.finish_and_clear();
        println!("  {table:<16} {copied} rows");
    }
    // Records of past months land in the default partition first; give them their own.
    dest.maintain_generations(None).await?;
    let (a, b) = (source.fingerprint().await?, dest.fingerprint().await?);
    let mut mismatches = 0;
    for ((what, x), (_, y)) in a.iter().zip(&b) {
        if x != y {
            mismatches += 1;
            println!("  MISMATCH {what}: {x} in the source, {y} in the destination");
        }
    }
    anyhow::ensure!(
        mismatches == 0 && a.len() == b.len(),
        "the copy does not match its source"
    );
    println!(
        "verified {} counts, balances and totals in {:.1}s: the destination matches",
        a.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
