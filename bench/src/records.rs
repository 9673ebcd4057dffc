//! The records generator: a realistic, reproducible stream of generation records spread over
//! `--days` days, written in batches exactly as the gateway writes them (records and ledger
//! charges), with the rollups added per day from the same records.
//!
//! Shape (fixed by `--seed`): model popularity follows a Zipf law over the catalog's chat
//! models (a few leaders, a long tail); each model is served by one to three of a dozen
//! providers; each key sticks to a handful of favourite models and to one app (or none);
//! prompts of 50 to 8,000 tokens, completions of 10 to 2,000, costs at catalog prices.

use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use llmux::catalog::{Catalog, Model};
use llmux::config::Config;
use llmux::metering::GenerationRecord;
use llmux::metering::rollup::{Deltas, Period, Privacy, parse_date};
use llmux::storage::Store;
use llmux_protocol::canonical::Usage;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const DAY_MS: i64 = 86_400_000;

const PROVIDERS: &[&str] = &[
    "deepinfra",
    "together",
    "fireworks",
    "novita",
    "groq",
    "baseten",
    "parasail",
    "chutes",
    "atlas-cloud",
    "siliconflow",
    "nebius",
    "friendli",
];

/// Leaders placed first in the popularity order (the rest of the catalog follows, shuffled).
const LEADERS: &[&str] = &[
    "minimax/minimax-m2.5",
    "moonshotai/kimi-k2.5",
    "z-ai/glm-5",
    "deepseek/deepseek-v3.2",
    "anthropic/claude-sonnet-4.6",
    "google/gemini-3-flash-preview",
    "anthropic/claude-opus-4.6",
    "openai/gpt-5.2",
    "x-ai/grok-4-fast",
    "qwen/qwen3-coder",
];

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Database to fill (`sqlite://FILE` or `postgres://...`); created if needed.
    #[arg(long)]
    database: String,
    /// Records to generate.
    #[arg(long)]
    records: u64,
    /// Days the records span, ending at --end-date.
    #[arg(long, default_value_t = 180)]
    days: u32,
    /// The last day (default: yesterday, UTC).
    #[arg(long)]
    end_date: Option<String>,
    #[arg(long, default_value_t = 60)]
    apps: usize,
    #[arg(long, default_value_t = 80)]
    accounts: usize,
    #[arg(long, default_value_t = 3)]
    keys_per_account: usize,
    /// Records per write transaction.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Add only the rollups of the generated records, not the records themselves (at 100
    /// million records the raw rows would take about 60 GB; rankings read only rollups).
    #[arg(long)]
    rollups_only: bool,
}

struct KeyProfile {
    account: String,
    hash: String,
    app: Option<(String, String)>,
    /// Indexes into the model list, most used first.
    favourites: Vec<usize>,
}

/// Zipf-like pick of an index below `n` (exponent ~1.1), by inverse transform on a table.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        Zipf { cumulative }
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let r = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|c| *c < r)
            .min(self.cumulative.len() - 1)
    }
}

fn hash_of(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.records > 0 && a.days > 0,
        "--records and --days must be positive"
    );
    let config = Config::load(None, None, Some(&a.database))?;
    let store = Store::open(&config.database_url).await?;
    let catalog = Catalog::build(&config, None)?;
    let mut rng = StdRng::seed_from_u64(a.seed);

    // Models in popularity order.
    let mut models: Vec<&Model> = catalog
        .models()
        .iter()
        .map(|m| m.as_ref())
        .filter(|m| !m.is_embedding_model() && !m.reference_pricing.variable && !m.id.contains(':'))
        .collect();
    models.shuffle(&mut rng);
    models.sort_by_key(|m| {
        LEADERS
            .iter()
            .position(|l| *l == m.id)
            .unwrap_or(usize::MAX)
    });
    let popularity = Zipf::new(models.len(), 1.1);

    // Accounts, keys (each with an app and favourite models).
    let mut keys: Vec<KeyProfile> = Vec::new();
    for acct in 0..a.accounts {
        for k in 0..a.keys_per_account {
            let app = (rng.random_bool(0.75)).then(|| {
                let i = Zipf::new(a.apps.max(1), 1.0).pick(&mut rng);
                (format!("https://app-{i}.example"), format!("App {i}"))
            });
            let n = rng.random_range(3..9);
            let mut favourites: Vec<usize> = (0..n).map(|_| popularity.pick(&mut rng)).collect();
            favourites.dedup();
            keys.push(KeyProfile {
                account: format!("acct_bench_{acct:04}"),
                hash: format!(
                    "{:064x}",
                    hash_of(&format!("key-{acct}-{k}")) as u128 * 0x9e3779b97f4a7c15
                ),
                app,
                favourites,
            });
        }
    }
    let key_pick = Zipf::new(keys.len(), 0.8);
    let favourite_pick = Zipf::new(8, 1.2);

    let end = match &a.end_date {
        Some(d) => parse_date(d).context("--end-date: expected YYYY-MM-DD")?,
        None => Period::Day.start(llmux::clock::now_ms()) - DAY_MS,
    };
    let first = end - (a.days as i64 - 1) * DAY_MS;
    let privacy = Privacy::default();
    let bar = ProgressBar::new(a.records);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, eta {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_message("generating");
    let started = Instant::now();
    let per_day = a.records / a.days as u64;
    let remainder = a.records % a.days as u64;
    let mut seq = 0u64;
    for d in 0..a.days as u64 {
        let n = per_day + u64::from(d < remainder);
        let day = first + d as i64 * DAY_MS;
        let mut deltas = Deltas::default();
        let mut batch: Vec<GenerationRecord> = Vec::with_capacity(a.batch);
        for i in 0..n {
            let key = &keys[key_pick.pick(&mut rng)];
            let m = models[key.favourites[favourite_pick.pick(&mut rng) % key.favourites.len()]];
            let providers = 1 + (hash_of(&m.id) % 3) as usize;
            let provider = PROVIDERS
                [(hash_of(&m.id) as usize + rng.random_range(0..providers)) % PROVIDERS.len()];
            let usage = Usage {
                prompt_tokens: rng.random_range(50..8000),
                completion_tokens: rng.random_range(10..2000),
                ..Default::default()
            };
            let cost = m.reference_pricing.cost(&usage, 0);
            seq += 1;
            let r = GenerationRecord {
                id: format!("gen-bench-{seq:012}"),
                created_at_ms: day + (i as i64 * DAY_MS) / n as i64,
                account_id: Some(key.account.clone()),
                key_hash: Some(key.hash.clone()),
                api_type: "completions".into(),
                requested_model: m.id.clone(),
                model: Some(m.id.clone()),
                provider: Some(provider.to_string()),
                provider_name: Some(provider.to_string()),
                usage,
                cost,
                latency_ms: Some(rng.random_range(200..20_000)),
                status: 200,
                finish_reason: Some("stop".into()),
                app_referer: key.app.as_ref().map(|a| a.0.clone()),
                app_title: key.app.as_ref().map(|a| a.1.clone()),
                ..Default::default()
            };
            deltas.add(&r, &privacy);
            batch.push(r);
            if batch.len() == a.batch {
                if !a.rollups_only {
                    store
                        .write_generations_without_rollups(&batch, "bench")
                        .await?;
                }
                bar.inc(batch.len() as u64);
                batch.clear();
            }
        }
        if !a.rollups_only {
            store
                .write_generations_without_rollups(&batch, "bench")
                .await?;
        }
        bar.inc(batch.len() as u64);
        store.add_rollups(&deltas).await?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "generated {} records{} over {} days ({} to {}) in {secs:.0}s ({:.0} records/s) into {}",
        a.records,
        if a.rollups_only {
            " (rollups only)"
        } else {
            ""
        },
        a.days,
        llmux::metering::rollup::date_string(first),
        llmux::metering::rollup::date_string(end),
        a.records as f64 / secs,
        llmux::storage::redact(&config.database_url)
    );
    Ok(())
}
