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

/// Serialized (for the spool) without the fields that hold their default: a record is copied
/// into the spool on the request's path, and the nulls, zeros and `false`s were a fifth of
/// its bytes and of the work of writing it; reading fills them back in (`serde(default)`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationRecord {
    /// `gen-...`
    pub id: String,
    pub created_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<String>,
    /// `completions`, `messages`, `embeddings`.
    pub api_type: String,
    pub requested_model: String,
    /// The catalog model that served (after fallbacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Provider slug and display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub streamed: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub cancelled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_finish_reason: Option<String>,
    pub usage: Usage,
    /// Usage was counted by llmux's tokenizer because the upstream reported none.
    #[serde(skip_serializing_if = "is_false")]
    pub usage_estimated: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub cost: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cost: Option<String>,
    /// Milliseconds from request arrival to the end of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Milliseconds from request arrival to the first token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<i64>,
    /// Milliseconds from the first token to the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_ms: Option<i64>,
    /// The HTTP status llmux answered with (200 for streams, even when they end in an error).
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_referer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub is_byok: bool,
    /// For BYOK requests: the cost at the endpoint's price, which the provider bills the
    /// account directly (`cost` is llmux's fee).
    #[serde(skip_serializing_if = "is_zero")]
    pub byok_usage: Money,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provider_responses: Vec<ProviderResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charge: Option<Charge>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(m: &Money) -> bool {
    *m == Money::ZERO
}

/// Two records for round-trip tests: one with only what every record has, one with every
/// kind of field set (text with the bytes that end a JSON line or look like a spool's
/// unwritten space included).
#[cfg(test)]
pub(crate) fn sparse_and_full() -> (GenerationRecord, GenerationRecord) {
    let sparse = GenerationRecord {
        id: "gen-1".into(),
        created_at_ms: 1,
        api_type: "completions".into(),
        requested_model: "a/m".into(),
        status: 200,
        ..Default::default()
    };
    let full = GenerationRecord {
        account_id: Some("acct".into()),
        key_hash: Some("k".into()),
        model: Some("a/m".into()),
        streamed: true,
        cancelled: true,
        usage_estimated: true,
        is_byok: true,
        cost: Money(7),
        byok_usage: Money(-9),
        usage: Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: 3,
            upstream_cost: Some("0.001".into()),
            ..Default::default()
        },
        error: Some("line\n\0\u{7b}\u{b7} é".into()),
        ttft_ms: Some(0),
        latency_ms: Some(-1),
        provider_responses: vec![ProviderResponse {
            provider: "p".into(),
            endpoint: "m".into(),
            status: None,
            latency_ms: 3,
            error: None,
        }],
        charge: Some(Charge {
            account_id: "acct".into(),
            key_hash: "k".into(),
            amount: Money(7),
        }),
        ..sparse.clone()
    };
    (sparse, full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &GenerationRecord) -> String {
        let json = serde_json::to_string(r).unwrap();
        let back: GenerationRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, r, "{json}");
        json
    }

    #[test]
    fn records_read_back_whole_without_their_default_fields() {
        let (sparse, full) = sparse_and_full();
        let json: serde_json::Value = serde_json::from_str(&round_trip(&sparse)).unwrap();
        let fields = json.as_object().unwrap();
        assert!(
            fields.values().all(|v| !v.is_null() && *v != false),
            "{json}"
        );
        assert_eq!(fields.len(), 6, "{json}");
        round_trip(&full);
    }
}
