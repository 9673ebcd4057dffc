//! What Anthropic's requests and responses share: stop reasons, usage, reasoning blocks.

use base64::Engine;
use serde_json::{Value, json};

use super::REASONING_FORMAT;
use crate::canonical::{FinishReason, Protocol, RawItem, ReasoningBlock, Usage};

/// The fields of a `tool_use` block beyond id, name and input (e.g. `caller`), kept so an
/// Anthropic client gets the block back whole.
pub fn tool_use_extra(b: &Value) -> Option<RawItem> {
    let o = b.as_object()?;
    let extra: serde_json::Map<String, Value> = o
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "type" | "id" | "name" | "input"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!extra.is_empty()).then_some(RawItem {
        protocol: Protocol::Anthropic,
        value: Value::Object(extra),
    })
}

/// Put Anthropic extras back on a block.
pub fn merge_tool_use_extra(block: &mut Value, extra: Option<&RawItem>) {
    if let (
        Some(RawItem {
            protocol: Protocol::Anthropic,
            value: Value::Object(fields),
        }),
        Some(b),
    ) = (extra, block.as_object_mut())
    {
        for (k, v) in fields {
            b.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Normalize an Anthropic `stop_reason`.
pub fn normalize_stop_reason(native: &str) -> FinishReason {
    match native {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// The Anthropic `stop_reason` for a canonical finish (the upstream's own word when it was
/// Anthropic's).
pub fn stop_reason_for(reason: FinishReason, native: Option<&str>) -> &'static str {
    const NATIVE: &[&str] = &[
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
    ];
    if let Some(n) = native.and_then(|n| NATIVE.iter().find(|x| **x == n))
        && normalize_stop_reason(n) == reason
    {
        return n;
    }
    match reason {
        FinishReason::Stop | FinishReason::Error => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Canonical usage from Anthropic's, where `input_tokens` excludes cache reads and writes.
pub fn canonical_usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let written = n("cache_creation_input_tokens");
    Usage {
        prompt_tokens: n("input_tokens") + cached + written,
        completion_tokens: n("output_tokens"),
        cached_tokens: cached,
        cache_write_tokens: written,
        reasoning_tokens: 0,
        upstream_cost: None,
    }
}

/// Anthropic's usage object from canonical usage.
pub fn anthropic_usage(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens + u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.completion_tokens,
    })
}

/// Prefix of `redacted_thinking.data` that carries another provider's opaque reasoning (a
/// Gemini thought signature, say) through an Anthropic client and back, unchanged.
const FOREIGN_PREFIX: &str = "llmux.reasoning.";

/// The thinking block an Anthropic client sees for a reasoning block.
pub fn reasoning_to_block(b: &ReasoningBlock) -> Value {
    match b {
        ReasoningBlock::Text {
            text, signature, ..
        } => {
            json!({"type": "thinking", "thinking": text, "signature": signature.clone().unwrap_or_default()})
        }
        ReasoningBlock::Summary { summary, .. } => {
            json!({"type": "thinking", "thinking": summary, "signature": ""})
        }
        ReasoningBlock::Encrypted { data, format, id } => {
            if format.as_deref().is_none_or(|f| f == REASONING_FORMAT) && id.is_none() {
                json!({"type": "redacted_thinking", "data": data})
            } else {
                let packed = json!({"format": format, "id": id, "data": data}).to_string();
                let data = format!(
                    "{FOREIGN_PREFIX}{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(packed)
                );
                json!({"type": "redacted_thinking", "data": data})
            }
        }
    }
}

/// The reasoning block for a client's `redacted_thinking.data`.
pub fn redacted_to_reasoning(data: &str) -> ReasoningBlock {
    if let Some(packed) = data.strip_prefix(FOREIGN_PREFIX)
        && let Some(v) = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(packed)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(d) = s("data") {
            return ReasoningBlock::Encrypted {
                data: d,
                format: s("format"),
                id: s("id"),
            };
        }
    }
    ReasoningBlock::Encrypted {
        data: data.to_string(),
        format: Some(REASONING_FORMAT.into()),
        id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_reasoning_round_trips_through_redacted_thinking() {
        let b = ReasoningBlock::Encrypted {
            data: "sig==".into(),
            format: Some("google-gemini-v1".into()),
            id: Some("call_1".into()),
        };
        let block = reasoning_to_block(&b);
        assert_eq!(block["type"], "redacted_thinking");
        assert_eq!(redacted_to_reasoning(block["data"].as_str().unwrap()), b);
        let native = redacted_to_reasoning("abc");
        assert_eq!(reasoning_to_block(&native)["data"], "abc");
    }

    #[test]
    fn stop_reasons_round_trip() {
        assert_eq!(normalize_stop_reason("tool_use"), FinishReason::ToolCalls);
        assert_eq!(
            stop_reason_for(FinishReason::Stop, Some("stop_sequence")),
            "stop_sequence"
        );
        assert_eq!(
            stop_reason_for(FinishReason::Stop, Some("stop")),
            "end_turn"
        );
        assert_eq!(stop_reason_for(FinishReason::Length, None), "max_tokens");
    }
}
