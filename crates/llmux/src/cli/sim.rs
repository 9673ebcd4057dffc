//! `llmux sim`: a simulated provider as its own process.

use clap::Args;
use llmux_sim::{Directives, SimConfig};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: String,
    /// Milliseconds before the first token.
    #[arg(long, default_value_t = 0)]
    pub ttft_ms: u64,
    /// Output tokens per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    pub tps: f64,
    /// Answer length in tokens.
    #[arg(long, default_value_t = 16)]
    pub tokens: usize,
    /// Require this API key on every request.
    #[arg(long)]
    pub require_key: Option<String>,
    /// Report repeated conversation prefixes as cached prompt tokens.
    #[arg(long)]
    pub prompt_cache: bool,
    /// Keep a log of requests at `GET /_sim/requests`.
    #[arg(long)]
    pub record: bool,
}

pub async fn run(a: SimArgs) -> anyhow::Result<()> {
    let handle = llmux_sim::spawn(
        a.listen.parse()?,
        SimConfig {
            defaults: Directives {
                ttft_ms: a.ttft_ms,
                tokens_per_sec: a.tps,
                tokens: a.tokens,
                ..Default::default()
            },
            require_key: a.require_key,
            prompt_cache: a.prompt_cache,
            record: a.record,
        },
    )
    .await?;
    println!("llmux sim listening on {}", handle.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
