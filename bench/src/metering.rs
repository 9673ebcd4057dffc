//! Metering throughput: generation records per second the store takes through the writer's
//! own path (records, ledger charges and rollups in one transaction per batch).

use std::time::Instant;

use llmux::metering::rollup::Privacy;
use llmux::metering::{Charge, GenerationRecord};
use llmux::money::Money;
use llmux::storage::Store;
use llmux_protocol::canonical::Usage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `sqlite://FILE` or `postgres://...`
    #[arg(long)]
    database: String,
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Records per transaction (the writer's default).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Write through the pool's `Any` connections (as bulk loads do), not through the
    /// writer's own connection (rusqlite's on SQLite, sqlx's native driver's on PostgreSQL):
    /// what that connection saves.
    #[arg(long)]
    through_pool: bool,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let store = Store::open(&a.database).await?;
    let account =
        llmux::billing::admin::create_account(&store, "metering-bench", None, "bench").await?;
    let mut rng = StdRng::seed_from_u64(7);
    let models = [
        "deepseek/deepseek-v3.2",
        "z-ai/glm-5",
        "minimax/minimax-m2.5",
        "openai/gpt-5",
        "anthropic/claude-sonnet-4.6",
    ];
    let now = llmux::clock::now_ms();
    let node = format!("bench-{now}");
    let privacy = Privacy::default();
    // One connection for every batch, as the gateway's metering writer does (none when the
    // batches go through the pool).
    let mut conn = if a.through_pool {
        None
    } else {
        Some(store.connect_writer().await?)
    };
    let started = Instant::now();
    let mut written = 0;
    while written < a.records {
        let n = a.batch.min(a.records - written);
        let batch: Vec<GenerationRecord> = (0..n)
            .map(|i| {
                let model = models[rng.random_range(0..models.len())];
                let cost = Money(rng.random_range(1_000..5_000_000));
                GenerationRecord {
                    id: format!("gen-{node}-{}", written + i),
                    created_at_ms: now + (written + i) as i64,
                    account_id: Some(account.id.clone()),
                    key_hash: Some(format!("{:064}", rng.random_range(0..20))),
                    api_type: "completions".into(),
                    requested_model: model.into(),
                    model: Some(model.into()),
                    provider: Some("sim".into()),
                    provider_name: Some("Simulated".into()),
                    usage: Usage {
                        prompt_tokens: rng.random_range(10..4000),
                        completion_tokens: rng.random_range(10..800),
                        ..Default::default()
                    },
                    cost,
                    status: 200,
                    app_referer: Some(format!("https://app-{}.example", rng.random_range(0..8))),
                    charge: Some(Charge {
                        account_id: account.id.clone(),
                        key_hash: "bench".into(),
                        amount: cost,
                    }),
                    ..Default::default()
                }
            })
            .collect();
        match &mut conn {
            Some(conn) => {
                store
                    .write_generations_on(conn, &batch, &node, &privacy)
                    .await?
            }
            None => store.write_generations(&batch, &node, &privacy).await?,
        }
        written += n;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "metering: {written} records (with ledger charges and rollups) in {secs:.1} s: {:.0} records/s into {}{}",
        written as f64 / secs,
        llmux::storage::redact(&a.database),
        if a.through_pool {
            ", through the pool"
        } else {
            ""
        }
    );
    Ok(())
}
