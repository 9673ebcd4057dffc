//! The generation record: one per inference request, success or failure.

use llmux_protocol::canonical::Usage;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// One upstream attempt made for a request (OpenRouter's `provider_responses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderResponse {
    pub provider: String,
    pub endpoint: String,
    /// The upstream's HTTP status; None when no response arrived (connect error, timeout).
    pub status: Option<u16>,
    pub latency_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a record is charged: summed into one ledger entry per account, key and UTC day of its
/// batch, written in the records' transaction, so there is never a charge without its record
/// nor a record charged twice (`storage::generations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub account_id: String,
    pub key_hash: String,
    pub amount: Money,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationRecord {
    /// `gen-...`
    pub id: String,
    pub created_at_ms: i64,
    pub account_id: Option<String>,
    pub key_hash: Option<String>,
    /// `completions`, `messages`, `embeddings`.
    pub api_type: String,
    pub requested_model: String,
    /// The catalog model that served (after fallbacks).
    pub model: Option<String>,
    /// Provider slug and display name.
    pub provider: Option<String>,
    pub provider_name: Option<String>,
    pub upstream_model: Option<String>,
    pub upstream_id: Option<String>,
    pub streamed: bool,
    pub cancelled: bool,
    pub finish_reason: Option<String>,
    pub native_finish_reason: Option<String>,
    pub usage: Usage,
    /// Usage was counted by llmux's tokenizer because the upstream reported none.
    pub usage_estimated: bool,
    pub cost: Money,
    pub upstream_cost: Option<String>,
    /// Milliseconds from request arrival to the end of the response.
    pub latency_ms: Option<i64>,
    /// Milliseconds from request arrival to the first token.
    pub ttft_ms: Option<i64>,
    /// Milliseconds from the first token to the last.
    pub generation_ms: Option<i64>,
    /// The HTTP status llmux answered with (200 for streams, even when they end in an error).
    pub status: u16,
    pub error: Option<String>,
    pub app_referer: Option<String>,
    pub app_title: Option<String>,
    pub external_user: Option<String>,
    pub session_id: Option<String>,
    pub user_agent: Option<String>,
    pub is_byok: bool,
    /// For BYOK requests: the cost at the endpoint's price, which the provider bills the
    /// account directly (`cost` is llmux's fee).
    pub byok_usage: Money,
    pub provider_responses: Vec<ProviderResponse>,
    pub charge: Option<Charge>,
}
