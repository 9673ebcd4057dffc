//! Demo mode (`llmux serve --demo`): a simulated provider started in-process, serving every
//! catalog model at its catalog price, so the whole system works offline. Everything it
//! serves is labelled simulated (provider names, `/models`, `/providers`).

pub mod traffic;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use llmux_protocol::openai::Dialect;
use llmux_sim::{Directives, SimConfig, SimHandle};

use crate::billing::admin::{self, KeySpec};
use crate::catalog::{Api, Credential, Endpoint, Model, Provider};
use crate::money::Money;
use crate::storage::Store;

pub const SIM_OPENAI: &str = "sim-openai";
pub const SIM_ANTHROPIC: &str = "sim-anthropic";
pub const SIM_GEMINI: &str = "sim-gemini";

pub struct DemoProviders {
    pub providers: Vec<Provider>,
    pub sim: SimHandle,
}

fn sim_provider(slug: &str, name: &str, api: Api, base_url: String) -> Provider {
    Provider {
        slug: slug.to_string(),
        name: name.to_string(),
        api,
        base_url,
        credential: Credential::None,
        dialect: Dialect::Generic,
        stream_usage: true,
        headers: Vec::new(),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(120),
        idle_timeout: Duration::from_secs(60),
        http2_prior_knowledge: false,
        simulated: true,
        collects_data: false,
        zdr: true,
    }
}

impl DemoProviders {
    /// Start the simulator on a free local port.
    pub async fn start() -> anyhow::Result<DemoProviders> {
        let sim = llmux_sim::spawn(
            "127.0.0.1:0".parse()?,
            SimConfig {
                defaults: Directives {
                    ttft_ms: 250,
                    tokens_per_sec: 80.0,
                    tokens: 40,
                    ..Default::default()
                },
                prompt_cache: true,
                ..Default::default()
            },
        )
        .await?;
        let providers = vec![
            sim_provider(
                SIM_OPENAI,
                "Simulated (OpenAI protocol)",
                Api::OpenAi,
                format!("{}/v1", sim.base_url()),
            ),
            sim_provider(
                SIM_ANTHROPIC,
                "Simulated (Anthropic protocol)",
                Api::Anthropic,
                format!("{}/v1", sim.base_url()),
            ),
            sim_provider(
                SIM_GEMINI,
                "Simulated (Gemini protocol)",
                Api::Gemini,
                format!("{}/v1beta", sim.base_url()),
            ),
        ];
        Ok(DemoProviders { providers, sim })
    }

    /// The demo endpoint for a catalog model: the simulator, at the model's catalog price,
    /// speaking the protocol of the model's own maker (Anthropic's for Claude, Gemini's for
    /// Google's models, OpenAI's for the rest), so the demo exercises every adapter.
    pub fn endpoint_for(
        &self,
        m: &Model,
        providers: &foldhash::HashMap<String, Arc<Provider>>,
    ) -> Option<Endpoint> {
        if m.reference_pricing.variable {
            return None;
        }
        let (slug, upstream_model) = match m.author.as_str() {
            "anthropic" | "~anthropic" if !m.is_embedding_model() => {
                (SIM_ANTHROPIC, m.slug().to_string())
            }
            "google" | "~google" if !m.is_embedding_model() => (SIM_GEMINI, m.slug().to_string()),
            _ => (SIM_OPENAI, m.id.clone()),
        };
        let provider = providers.get(slug)?.clone();
        Some(Endpoint {
            model_id: m.id.clone(),
            model_name: m.name.clone(),
            provider,
            upstream_model,
            pricing: m.reference_pricing.clone(),
            context_length: m.top_provider.context_length.or(m.context_length),
            max_completion_tokens: m.top_provider.max_completion_tokens,
            max_prompt_tokens: None,
            quantization: None,
            supported_parameters: m.supported_parameters.clone(),
            request_heads: Default::default(),
        })
    }
}

/// The demo's key: reused from `DATA_DIR/demo-key` while it is valid, else created with $10
/// of credits.
pub async fn ensure_demo_key(store: &Store, data_dir: &Path, node: &str) -> anyhow::Result<String> {
    let path = data_dir.join("demo-key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_string();
        if let Some(row) = store.key(&crate::billing::keys::hash(&k)).await?
            && !row.disabled
        {
            return Ok(k);
        }
    }
    let created = admin::create_key(
        store,
        &KeySpec {
            name: "demo".into(),
            credits: Some(Money::parse_usd("10")?),
            ..Default::default()
        },
        node,
    )
    .await?;
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, format!("{}\n", created.key))?;
    Ok(created.key)
}

/// Keys the demo workload sends its traffic with: three teams, each its own account with
/// $1000 of credits, reused from `DATA_DIR/demo-traffic-keys` while valid.
pub async fn ensure_traffic_keys(
    store: &Store,
    data_dir: &Path,
    node: &str,
) -> anyhow::Result<Vec<String>> {
    let path = data_dir.join("demo-traffic-keys");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let keys: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let mut valid = !keys.is_empty();
        for k in &keys {
            valid &= store
                .key(&crate::billing::keys::hash(k))
                .await?
                .is_some_and(|row| !row.disabled);
        }
        if valid {
            return Ok(keys);
        }
    }
    let mut keys = Vec::new();
    for team in ["demo-team-atlas", "demo-team-borealis", "demo-team-cascade"] {
        let created = admin::create_key(
            store,
            &KeySpec {
                name: team.into(),
                credits: Some(Money::parse_usd("1000")?),
                ..Default::default()
            },
            node,
        )
        .await?;
        keys.push(created.key);
    }
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, keys.join("\n") + "\n")?;
    Ok(keys)
}
