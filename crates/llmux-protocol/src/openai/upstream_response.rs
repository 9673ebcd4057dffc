//! Decode an OpenAI-compatible upstream's complete (non-streamed) response.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::reasoning_details;
use crate::ProtocolError;
use crate::canonical::*;
use crate::error::parse_json;

#[derive(Deserialize)]
struct WireResponse {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    system_fingerprint: Option<String>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct WireMessage {
    #[serde(default)]
    pub content: WireContent,
    pub refusal: Option<String>,
    pub reasoning_content: Option<String>,
    pub reasoning: Option<String>,
    pub reasoning_details: Option<Value>,
    pub tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
pub(super) struct WireToolCall {
    pub index: Option<u32>,
    pub id: Option<String>,
    pub function: Option<WireFunction>,
}

#[derive(Deserialize)]
pub(super) struct WireFunction {
    pub name: Option<String>,
    pub arguments: Option<Value>,
}

#[derive(Deserialize, Default)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    pub prompt_tokens_details: Option<PromptDetails>,
    pub completion_tokens_details: Option<CompletionDetails>,
    /// DeepSeek reports cache hits on its own.
    pub prompt_cache_hit_tokens: Option<u64>,
    /// OpenRouter-style upstreams report their charge.
    pub cost: Option<serde_json::Number>,
}

#[derive(Deserialize, Default)]
pub(super) struct PromptDetails {
    pub cached_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
pub(super) struct CompletionDetails {
    pub reasoning_tokens: Option<u64>,
}

impl WireUsage {
    pub(super) fn canonical(&self) -> Usage {
        let pd = self.prompt_tokens_details.as_ref();
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: pd
                .and_then(|d| d.cached_tokens)
                .or(self.prompt_cache_hit_tokens)
                .unwrap_or(0),
            cache_write_tokens: pd.and_then(|d| d.cache_write_tokens).unwrap_or(0),
            reasoning_tokens: self
                .completion_tokens_details
                .as_ref()
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            upstream_cost: self.cost.as_ref().map(|n| n.to_string()),
        }
    }
}

/// Normalize an OpenAI-compatible finish reason (and the few other spellings such servers use).
pub fn normalize_finish(native: &str) -> FinishReason {
    match native {
        "length" | "max_tokens" | "model_length" => FinishReason::Length,
        "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
        "content_filter" | "safety" => FinishReason::ContentFilter,
        "error" => FinishReason::Error,
        _ => FinishReason::Stop,
    }
}

/// The text of an upstream message's `content`: a string, or (from some servers) an array of
/// parts whose `text`s are joined; anything else is no text. Read straight into its `String`
/// (a stream sends one per chunk), not through a `Value` copied out afterwards.
#[derive(Default)]
pub(super) struct WireContent(pub Option<String>);

impl<'de> Deserialize<'de> for WireContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireContent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message's content")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<WireContent, E> {
                Ok(WireContent(Some(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<WireContent, E> {
                Ok(WireContent(Some(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<WireContent, A::Error> {
                let mut text = String::new();
                while let Some(part) = parts.next_element::<Value>()? {
                    if let Some(t) = part.get("text").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
                Ok(WireContent(Some(text)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireContent, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(WireContent(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<WireContent, E> {
                Ok(WireContent(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<WireContent, E> {
                Ok(WireContent(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<WireContent, E> {
                Ok(WireContent(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<WireContent, E> {
                Ok(WireContent(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<WireContent, E> {
                Ok(WireContent(None))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn arguments_text(v: &Option<Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Decode a complete response.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, ProtocolError> {
    let w: WireResponse = parse_json(body).map_err(ProtocolError::upstream)?;
    if let Some(e) = w.error.filter(|e| !e.is_null()) {
        let msg = e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string());
        return Err(ProtocolError::upstream(format!(
            "upstream reported an error: {msg}"
        )));
    }
    let choice = w
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ProtocolError::upstream("response has no choices"))?;
    let msg = choice.message.unwrap_or_default();
    let mut reasoning = Vec::new();
    if let Some(d) = &msg.reasoning_details {
        reasoning = reasoning_details::decode_lenient(d)
            .into_iter()
            .map(|(_, b)| b)
            .collect();
    }
    if reasoning.is_empty()
        && let Some(t) = msg
            .reasoning_content
            .or(msg.reasoning)
            .filter(|t| !t.is_empty())
    {
        reasoning.push(ReasoningBlock::Text {
            text: t,
            signature: None,
            format: None,
        });
    }
    let tool_calls = msg
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let f = c.function;
            ToolCall {
                id: c.id.unwrap_or_else(|| format!("call_{i}")),
                name: f.as_ref().and_then(|f| f.name.clone()).unwrap_or_default(),
                arguments: arguments_text(&f.and_then(|f| f.arguments)),
                extra: None,
            }
        })
        .collect();
    Ok(ChatResponse {
        upstream_id: w.id,
        upstream_model: w.model,
        text: msg.content.0,
        refusal: msg.refusal,
        reasoning,
        tool_calls,
        finish: choice.finish_reason.map(|n| Finish {
            reason: normalize_finish(&n),
            native: Some(n),
        }),
        usage: w.usage.map(|u| u.canonical()),
        system_fingerprint: w.system_fingerprint,
    })
}

/// The human-readable message in an upstream error body (`{"error":{"message":..}}`,
/// `{"message":..}`, `{"error":"..."}`, or plain text), bounded in length.
pub fn decode_error_message(body: &[u8]) -> String {
    const MAX: usize = 2000;
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let e = v.get("error").unwrap_or(&v);
            match e {
                Value::String(s) => s.clone(),
                _ => {
                    let msg = e
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    // Gateways (OpenRouter) put the provider's own words in metadata.raw.
                    match e.pointer("/metadata/raw").and_then(Value::as_str) {
                        Some(raw) if !msg.contains(raw) => format!("{msg}: {raw}"),
                        _ => msg,
                    }
                }
            }
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.len() > MAX {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &text[..end])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_deepseek_reasoning_and_cache_hits() {
        let r = decode_response(
            br#"{"id":"x","model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant",
            "content":"Look both ways.","reasoning_content":"The user asks..."},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":30,"prompt_cache_hit_tokens":4,
            "completion_tokens_details":{"reasoning_tokens":20}}}"#,
        )
        .unwrap();
        assert_eq!(r.text.as_deref(), Some("Look both ways."));
        assert_eq!(r.reasoning_text().as_deref(), Some("The user asks..."));
        let u = r.usage.unwrap();
        assert_eq!((u.cached_tokens, u.reasoning_tokens), (4, 20));
    }

    #[test]
    fn reads_every_shape_of_content() {
        let text = |content: &str| {
            let body = format!(
                r#"{{"choices":[{{"message":{{"role":"assistant"{content}}},"finish_reason":"stop"}}]}}"#
            );
            decode_response(body.as_bytes()).unwrap().text
        };
        assert_eq!(
            text(r#","content":"a \"quoted\" é""#).as_deref(),
            Some("a \"quoted\" é")
        );
        assert_eq!(
            text(r#","content":[{"type":"text","text":"one "},"odd",{"type":"image"},{"text":"two"}]"#)
                .as_deref(),
            Some("one two")
        );
        assert_eq!(text(r#","content":[]"#).as_deref(), Some(""));
        for nothing in [
            "",
            r#","content":null"#,
            r#","content":7"#,
            r#","content":{"a":[1]}"#,
        ] {
            assert_eq!(text(nothing), None, "{nothing}");
        }
    }

    #[test]
    fn extracts_error_messages() {
        assert_eq!(
            decode_error_message(br#"{"error":{"message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(decode_error_message(b"oops"), "oops");
        assert!(decode_response(br#"{"error":{"message":"x"}}"#).is_err());
        assert!(decode_response(b"not json").is_err());
    }
}
