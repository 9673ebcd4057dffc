//! The configuration file's shape, deserialized strictly (unknown keys are errors).
//! This is the contract the README documents; extend it, never rename.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub metering: MeteringSection,
    #[serde(default)]
    pub billing: BillingSection,
    #[serde(default)]
    pub router: RouterSection,
    #[serde(default)]
    pub rankings: RankingsSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub providers: Vec<ProviderSection>,
    #[serde(default)]
    pub models: Vec<ModelSection>,
    #[serde(default)]
    pub endpoints: Vec<EndpointSection>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `host:port` to listen on (default `127.0.0.1:8080`).
    pub listen: Option<String>,
    /// `sqlite://FILE` (relative to this file) or `postgres://...`.
    pub database: Option<String>,
    /// Where the default SQLite database and demo files live.
    pub data_dir: Option<PathBuf>,
    /// Largest accepted request body (default 32 MiB); larger bodies get 413.
    pub max_body_bytes: Option<usize>,
    /// While a stream waits for its first token, an SSE comment is sent this often (default
    /// 3000 ms), so clients with short read timeouts do not give up.
    pub stream_keepalive_ms: Option<u64>,
    /// A streamed answer's client that takes none of it for this long (default 60000 ms, as
    /// nginx's `send_timeout`) is treated as gone: the upstream is stopped, what was produced
    /// is billed, and the connection is closed.
    pub stream_send_timeout_ms: Option<u64>,
    /// On SIGTERM, how long open requests may take to finish (default 10000 ms). Streams still
    /// open then are ended (the client gets an error event) and billed for what they produced;
    /// requests still awaiting a whole answer get a 503.
    pub shutdown_grace_ms: Option<u64>,
    /// Threads serving requests, each running its connections start to finish (default: one
    /// per core).
    pub threads: Option<usize>,
    /// How long a serving thread with nothing to run watches for new events before it sleeps
    /// (default 200 µs; 0 turns it off). Spares a wake-up per wait at light load; a thread
    /// whose watches keep ending empty watches less and less often.
    pub poll_before_sleep_us: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeteringSection {
    /// How often pending generation records are written (default 200 ms). A hard crash loses
    /// at most the records of this interval.
    pub flush_interval_ms: Option<u64>,
    /// Records per database transaction (default 1000).
    pub batch_size: Option<usize>,
    /// Records allowed to wait for the database before new requests are refused with 503
    /// (default 200000). Accepted records are never dropped.
    pub max_pending: Option<usize>,
    /// Append every record to a local spool (`DATA_DIR/spool`) before answering, so a crash
    /// loses none (default true).
    pub spool: Option<bool>,
    /// Days raw generation records are kept (default: forever). Rollups, and so rankings and
    /// activity, keep their history; PostgreSQL drops whole monthly partitions.
    pub retention_days: Option<u32>,
    /// Run the writer in the idle scheduling class while it keeps up (Linux; default true).
    pub writer_idle_class: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// `redis://host:port/db`: several nodes share rate limits, credit and key-limit
    /// reservations and endpoint health through it (with `database = "postgres://..."`).
    pub redis: Option<String>,
    /// Prefix of every Redis key (several clusters can share one Redis). Default `llmux`.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingsSection {
    /// Accounts whose traffic stays out of public rankings (it still counts in their own
    /// activity). Applies to records written from now on, and to all after
    /// `llmux rollups rebuild`.
    #[serde(default)]
    pub private_accounts: Vec<String>,
    /// Seconds a public rankings answer (API or page) is reused (default 15; 0: never).
    pub cache_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSection {
    /// An endpoint with significant failures in this many recent seconds is tried last
    /// (default 30, OpenRouter's).
    pub unstable_window_secs: Option<u64>,
    /// Consecutive failures that open an endpoint's circuit breaker (default 5).
    pub breaker_failures: Option<u32>,
    /// Seconds an open breaker waits before letting one probe request through (default 10;
    /// doubled after each failed probe, up to 5 minutes).
    pub breaker_open_secs: Option<u64>,
    /// Minutes a prompt-caching conversation stays pinned to its endpoint without use
    /// (default 10).
    pub sticky_idle_minutes: Option<u64>,
    /// Seed for the weighted random choice (default: from the OS). Tests set it.
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSection {
    /// What llmux charges for a request served with an account's own provider key, as a
    /// percentage of the endpoint's price (default 5, OpenRouter's).
    pub byok_fee_percent: Option<String>,
    /// Environment variable holding the 32-byte key that seals stored provider keys
    /// (default `LLMUX_SECRETS_KEY`; hex or base64). Without it, BYOK is unavailable.
    pub secrets_key_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// Identifier used in `provider.order/only/ignore` and in responses.
    pub slug: String,
    /// Display name (defaults to the slug).
    pub name: Option<String>,
    /// Wire protocol: `openai`, `anthropic` or `gemini`.
    pub api: String,
    /// The provider's API root, e.g. `https://api.deepseek.com/v1`.
    pub base_url: String,
    /// Environment variable holding the upstream API key.
    pub api_key_env: Option<String>,
    /// For `api = "openai"`: which family of OpenAI-compatible server this is
    /// (`openai`, `openrouter`, `deepseek`, `generic`); guessed from the slug when absent.
    pub dialect: Option<String>,
    /// Ask for usage in streams (`stream_options.include_usage`, default true).
    pub stream_usage: Option<bool>,
    /// Extra headers sent upstream with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds to establish a connection (default 10).
    pub connect_timeout_secs: Option<u64>,
    /// Seconds until the first token (streams) or the whole answer (non-streaming) (default 300).
    pub timeout_secs: Option<u64>,
    /// Seconds a stream may stay silent between chunks (default 120).
    pub idle_timeout_secs: Option<u64>,
    /// Speak HTTP/2 without TLS negotiation (for h2c upstreams such as some vLLM setups).
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// Marks the provider as a simulation (the demo's providers are).
    #[serde(default)]
    pub simulated: bool,
    /// Whether the provider may store or train on prompts: `allow` (default) or `deny`.
    /// Requests with `provider.data_collection = "deny"` use only `deny` providers.
    pub data_collection: Option<String>,
    /// The provider retains no data (zero data retention); `provider.zdr = true` requests
    /// use only these.
    #[serde(default)]
    pub zdr: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `author/slug`.
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub context_length: Option<u64>,
    /// Country of origin of the author (ISO code), when the author is not in the catalog.
    pub origin: Option<String>,
    pub input_modalities: Option<Vec<String>>,
    pub output_modalities: Option<Vec<String>>,
    pub supported_parameters: Option<Vec<String>>,
    pub hugging_face_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Catalog model id this endpoint serves.
    pub model: String,
    /// Provider slug.
    pub provider: String,
    /// The provider's own name for the model.
    pub upstream_model: String,
    #[serde(default)]
    pub pricing: PricingSection,
    pub context_length: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    pub quantization: Option<String>,
    pub supported_parameters: Option<Vec<String>>,
}

/// Prices in USD per million tokens (`request` and `image`: USD per request / per image).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSection {
    pub prompt: Option<String>,
    pub completion: Option<String>,
    pub input_cache_read: Option<String>,
    pub input_cache_write: Option<String>,
    pub internal_reasoning: Option<String>,
    pub request: Option<String>,
    pub image: Option<String>,
}
