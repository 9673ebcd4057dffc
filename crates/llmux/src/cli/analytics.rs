//! `llmux rankings`, `llmux rankings import`, `llmux rollups rebuild|verify`,
//! `llmux activity`: the analytics views in the terminal, read from the same database.

use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::billing::keys;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::rankings::activity::{self, GroupBy, Range};
use crate::rankings::{human_tokens, hundredths_f64, market, table};
use crate::storage::Store;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RankingsArgs {
    #[command(subcommand)]
    pub command: Option<RankingsCommand>,
    /// Bucket size: day, week or month.
    #[arg(long, default_value = "week")]
    pub period: String,
    /// Group by model, author, origin, provider or app.
    #[arg(long, default_value = "model")]
    pub by: String,
    /// Periods in the window.
    #[arg(long, default_value_t = 4)]
    pub weeks: usize,
    /// The window ends with the period holding this day (default: the latest data).
    #[arg(long)]
    pub end_date: Option<String>,
    /// An imported market source instead of llmux's own traffic.
    #[arg(long)]
    pub source: Option<String>,
    /// Groups shown at most.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RankingsCommand {
    /// Load OpenRouter's public rankings dataset (the JSON of GET /datasets/rankings-daily)
    /// as a named source. The file is checked whole first; re-importing it changes nothing.
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        source: String,
    },
    /// Imported market sources.
    Sources,
}

#[derive(Subcommand, Debug)]
pub enum RollupsCommand {
    /// Recount every rollup from the raw generation records (stop the gateway first).
    Rebuild,
    /// Check that the rollups equal a recount of the raw records.
    Verify,
}

#[derive(Args, Debug)]
pub struct ActivityArgs {
    /// An API key (or its hash): that key's activity.
    #[arg(long, conflicts_with = "account")]
    pub key: Option<String>,
    /// An account id: all its keys.
    #[arg(long)]
    pub account: Option<String>,
    /// 1h, 1d, 1m or 1y.
    #[arg(long, default_value = "1m")]
    pub range: String,
    /// Group by model or key.
    #[arg(long, default_value = "model")]
    pub by: String,
    /// CSV instead of a table.
    #[arg(long)]
    pub csv: bool,
}

pub async fn rankings(config: &Config, args: RankingsArgs) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    let catalog = Catalog::build(config, None)?;
    match args.command {
        Some(RankingsCommand::Import { file, source }) => {
            if source.is_empty() || source == table::OWN_SOURCE || source.len() > 64 {
                anyhow::bail!(
                    "--source: a name of 1 to 64 characters other than {:?}",
                    table::OWN_SOURCE
                );
            }
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let rows = market::parse(&bytes, &catalog)
                .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was imported", file.display()))?;
            let changed = store.import_market(&source, &rows).await?;
            println!(
                "{}: {} rows checked, {changed} new or changed, into source {source:?}",
                file.display(),
                rows.len()
            );
            return Ok(());
        }
        Some(RankingsCommand::Sources) => {
            println!("{:<24}  {:>10}  LAST DAY", "SOURCE", "ROWS");
            for (name, (rows, last)) in store.market_sources().await? {
                println!(
                    "{name:<24}  {rows:>10}  {}",
                    crate::metering::rollup::date_string(last)
                );
            }
            return Ok(());
        }
        None => {}
    }
    let weeks = args.weeks.to_string();
    let limit = args.limit.to_string();
    let q = table::Query::parse(
        Some(&args.period),
        Some(&args.by),
        Some(&weeks),
        args.end_date.as_deref(),
        args.source.as_deref(),
        Some(&limit),
    )?;
    let r = table::rankings(&store, &catalog, &q).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let pct = |h: Option<i64>| h.map_or("-".to_string(), |h| format!("{:+.2}%", hundredths_f64(h)));
    let first = r.periods.first().expect("at least one period");
    let last = r.periods.last().expect("at least one period");
    println!(
        "{} by {}, {} {}s from {} to {} ({} tokens in the last {})",
        r.source,
        r.by,
        r.periods.len(),
        r.period,
        first.start,
        last.end,
        human_tokens(last.total_tokens),
        r.period
    );
    println!(
        "{:>4}  {:<40}  {:>10}  {:>8}  {:>10}  {:>10}",
        "RANK",
        args.by.to_uppercase(),
        "TOKENS",
        "SHARE",
        format!("VS PREV {}", r.period.to_uppercase())
            .chars()
            .take(10)
            .collect::<String>(),
        "WINDOW"
    );
    for g in &r.groups {
        let name = if g.name == g.key {
            g.key.clone()
        } else {
            format!("{} ({})", g.name, g.key)
        };
        println!(
            "{:>4}  {:<40}  {:>10}  {:>8}  {:>10}  {:>10}",
            g.rank.map_or("-".to_string(), |r| r.to_string()),
            name.chars().take(40).collect::<String>(),
            human_tokens(g.tokens),
            g.share
                .map_or("-".to_string(), |s| format!("{:.2}%", hundredths_f64(s))),
            pct(g.change),
            pct(g.change_window),
        );
    }
    Ok(())
}

pub async fn rollups(config: &Config, cmd: RollupsCommand) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    let total = store.generation_count().await?;
    let privacy = config.privacy();
    let started = Instant::now();
    let bar = ProgressBar::new(total.max(0) as u64);
    bar.set_message(match cmd {
        RollupsCommand::Rebuild => "rebuilding rollups",
        RollupsCommand::Verify => "recounting",
    });
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let tick = |done: u64| bar.set_position(done);
    match cmd {
        RollupsCommand::Rebuild => {
            let d = store.rebuild_rollups(&privacy, tick).await?;
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            println!(
                "rebuilt rollups from {total} records in {secs:.1}s ({:.0} records/s): {} model, {} app and {} account buckets",
                total as f64 / secs,
                d.models.len(),
                d.apps.len(),
                d.accounts.len()
            );
        }
        RollupsCommand::Verify => {
            let recount = store.recount_rollups(&privacy, tick).await?;
            bar.finish_and_clear();
            let stored = store.rollup_snapshot().await?;
            let diff = |a: usize, b: usize| a.abs_diff(b);
            let mismatched_models = recount
                .models
                .iter()
                .filter(|(k, v)| stored.models.get(k) != Some(v))
                .count()
                + diff(recount.models.len(), stored.models.len());
            let mismatched_apps = recount
                .apps
                .iter()
                .filter(|(k, v)| stored.apps.get(k) != Some(v))
                .count()
                + diff(recount.apps.len(), stored.apps.len());
            let mismatched_accounts = recount
                .accounts
                .iter()
                .filter(|(k, v)| stored.accounts.get(k) != Some(v))
                .count()
                + diff(recount.accounts.len(), stored.accounts.len());
            println!(
                "{total} records; buckets differing from a recount: {mismatched_models} model, {mismatched_apps} app, {mismatched_accounts} account"
            );
            if mismatched_models + mismatched_apps + mismatched_accounts > 0 {
                anyhow::bail!("the rollups do not match the records (run `llmux rollups rebuild`)");
            }
        }
    }
    Ok(())
}

pub async fn activity(config: &Config, args: ActivityArgs) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url).await?;
    let catalog = Catalog::build(config, None)?;
    let (account, key_hash) = match (&args.key, &args.account) {
        (Some(k), _) => {
            let hash = if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
                k.clone()
            } else {
                keys::hash(k)
            };
            let row = store
                .key(&hash)
                .await?
                .context("no such key (pass the key or its hash)")?;
            (row.account_id, Some(hash))
        }
        (None, Some(a)) => (a.clone(), None),
        (None, None) => anyhow::bail!("pass --key KEY or --account ID"),
    };
    let a = activity::activity(
        &store,
        &catalog,
        &account,
        key_hash.as_deref(),
        Range::parse(&args.range)?,
        GroupBy::parse(&args.by)?,
    )
    .await?;
    if args.csv {
        print!("{}", activity::csv(&a));
        return Ok(());
    }
    println!(
        "activity over {}: ${} spent, {} tokens, {} requests",
        a.range,
        a.totals.spend,
        human_tokens(a.totals.tokens),
        a.totals.requests
    );
    println!(
        "{:<44}  {:>12}  {:>10}  {:>9}",
        args.by.to_uppercase(),
        "SPEND (USD)",
        "TOKENS",
        "REQUESTS"
    );
    for g in &a.groups {
        println!(
            "{:<44}  {:>12}  {:>10}  {:>9}",
            g.name.chars().take(44).collect::<String>(),
            g.totals.spend,
            human_tokens(g.totals.tokens),
            g.totals.requests
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct DemoTrafficArgs {
    /// The gateway's root URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API keys to send with (repeat for several; each request picks one).
    #[arg(
        long = "key",
        env = "LLMUX_DEMO_KEYS",
        value_delimiter = ',',
        required = true
    )]
    pub keys: Vec<String>,
    /// Requests per second, on average.
    #[arg(long, default_value_t = 5.0)]
    pub rps: f64,
    /// How long to run; 0 runs until interrupted.
    #[arg(long, default_value_t = 1.0)]
    pub minutes: f64,
    /// Seed for a reproducible workload.
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn demo_traffic(args: DemoTrafficArgs) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    let workload = crate::demo::traffic::Workload {
        url: args.url.clone(),
        keys: args.keys,
        rps: args.rps,
        duration: (args.minutes > 0.0)
            .then(|| std::time::Duration::from_secs_f64(args.minutes * 60.0)),
        seed: args.seed,
    };
    println!("sending about {} requests/s to {}", args.rps, args.url);
    let stats = crate::demo::traffic::run(workload).await?;
    println!(
        "sent {} requests: {} answered, {} failed",
        stats.sent.load(Ordering::Relaxed),
        stats.ok.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );
    Ok(())
}
