//! Demo traffic: a small client workload sent through a gateway's real HTTP API (many models,
//! several apps, several keys, streaming and not), so rankings, activity and model pages fill
//! with data. `serve --demo` runs it in the background; `llmux demo-traffic` runs it against
//! any gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Semaphore;

/// Models and their weights: roughly the shape of the public market (Chinese open models
/// leading by volume, frontier models behind). Models missing from a catalog are skipped by
/// the gateway's answer (404), which the workload counts.
const MODELS: &[(&str, u32)] = &[
    ("minimax/minimax-m2.5", 20),
    ("moonshotai/kimi-k2.5", 15),
    ("z-ai/glm-5", 12),
    ("deepseek/deepseek-v3.2", 12),
    ("anthropic/claude-sonnet-4.6", 8),
    ("anthropic/claude-opus-4.6", 5),
    ("openai/gpt-5", 6),
    ("openai/gpt-5-mini", 5),
    ("google/gemini-2.5-flash", 6),
    ("google/gemini-3-flash-preview", 4),
    ("qwen/qwen3-coder", 5),
    ("x-ai/grok-4-fast", 4),
    ("mistralai/mistral-large", 2),
    ("minimax/minimax-m2.5:free", 5),
];

/// Apps (HTTP-Referer, X-Title); None sends no app headers.
const APPS: &[Option<(&str, &str)>] = &[
    Some(("https://acme-coder.example", "Acme Coder")),
    Some(("https://acme-coder.example", "Acme Coder")),
    Some(("https://chat.example.org", "Example Chat")),
    Some(("https://docs-bot.example.net", "Docs Bot")),
    Some(("https://agent.example.io", "Night Shift Agent")),
    None,
];

const PROMPTS: &[&str] = &[
    "Summarize the trade-offs between consistency and availability in distributed databases.",
    "Write a function that parses ISO 8601 dates and explain its edge cases.",
    "What changed in the last release notes? Give me the three most important points.",
    "Draft a polite reply declining a meeting and proposing two other times next week.",
    "Explain how a circuit breaker protects a service from cascading failures.",
    "Refactor this loop into an iterator chain and tell me why it is clearer.",
    "List the steps to rotate an API key without downtime.",
];

#[derive(Debug, Clone)]
pub struct Workload {
    /// The gateway's root URL (`http://127.0.0.1:8080`).
    pub url: String,
    pub keys: Vec<String>,
    /// Requests per second, on average.
    pub rps: f64,
    /// Stop after this long (None: run until the process ends).
    pub duration: Option<Duration>,
    pub seed: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|i| i.1).sum();
    let mut r = rng.random_range(0..total.max(1));
    for (item, w) in items {
        if r < *w {
            return item;
        }
        r -= w;
    }
    &items[0].0
}

/// Run the workload; returns its counts when it ends.
pub async fn run(w: Workload) -> anyhow::Result<Arc<Stats>> {
    anyhow::ensure!(
        !w.keys.is_empty(),
        "demo traffic needs at least one API key"
    );
    anyhow::ensure!(
        w.rps > 0.0 && w.rps <= 10_000.0,
        "--rps must be in (0, 10000]"
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let stats = Arc::new(Stats::default());
    let inflight = Arc::new(Semaphore::new(64));
    let mut rng = StdRng::seed_from_u64(w.seed.unwrap_or_else(rand::random));
    let url = format!("{}/api/v1/chat/completions", w.url.trim_end_matches('/'));
    let started = tokio::time::Instant::now();
    loop {
        if w.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        // Poisson arrivals at the requested rate.
        let gap = -(1.0 - rng.random::<f64>()).ln() / w.rps;
        tokio::time::sleep(Duration::from_secs_f64(gap.min(60.0))).await;
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        let model = *pick(&mut rng, MODELS);
        let app = APPS[rng.random_range(0..APPS.len())];
        let key = w.keys[rng.random_range(0..w.keys.len())].clone();
        let prompt = PROMPTS[rng.random_range(0..PROMPTS.len())];
        let repeat = rng.random_range(1..6);
        let stream = rng.random_bool(0.3);
        let body = json!({
            "model": model,
            "stream": stream,
            "max_tokens": rng.random_range(64..512),
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": prompt.repeat(repeat)},
            ],
        });
        let mut req = client.post(&url).bearer_auth(key).json(&body);
        if let Some((referer, title)) = app {
            req = req.header("HTTP-Referer", referer).header("X-Title", title);
        }
        let stats = stats.clone();
        stats.sent.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let ok = match req.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                Ok(r) => {
                    tracing::debug!("demo request for {model}: {}", r.status());
                    false
                }
                Err(e) => {
                    tracing::debug!("demo request for {model}: {e}");
                    false
                }
            };
            let counter = if ok { &stats.ok } else { &stats.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Let the last requests finish.
    let _ = inflight.acquire_many(64).await;
    Ok(stats)
}
