//! Decode Anthropic's complete Message object into canonical events (in content order).

use serde_json::Value;

use super::REASONING_FORMAT;
use super::blocks::{canonical_usage, normalize_stop_reason, tool_use_extra};
use crate::ProtocolError;
use crate::canonical::*;
use crate::error::parse_json;

/// The message of an error body: `{"type":"error","error":{"type","message"}}`.
pub fn decode_error_message(body: &[u8]) -> String {
    crate::openai::decode_error_message(body)
}

/// One content block as canonical events; `tools` counts tool calls so far.
pub(super) fn block_events(b: &Value, tools: &mut usize, out: &mut Vec<StreamEvent>) {
    let s = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match b.get("type").and_then(Value::as_str) {
        Some("text") => {
            let t = s("text");
            if !t.is_empty() {
                out.push(StreamEvent::Text(t));
            }
        }
        Some("thinking") => out.push(StreamEvent::Reasoning(ReasoningBlock::Text {
            text: s("thinking"),
            signature: Some(s("signature")).filter(|x| !x.is_empty()),
            format: Some(REASONING_FORMAT.into()),
        })),
        Some("redacted_thinking") => out.push(StreamEvent::Reasoning(ReasoningBlock::Encrypted {
            data: s("data"),
            format: Some(REASONING_FORMAT.into()),
            id: None,
        })),
        Some("tool_use") => {
            let index = *tools;
            *tools += 1;
            out.push(StreamEvent::ToolCallStart {
                index,
                id: s("id"),
                name: s("name"),
                extra: tool_use_extra(b),
            });
            let input = b
                .get("input")
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            out.push(StreamEvent::ToolCallArgs {
                index,
                arguments: input.to_string(),
            });
            out.push(StreamEvent::ToolCallEnd { index });
        }
        _ => out.push(StreamEvent::Raw(RawItem {
            protocol: Protocol::Anthropic,
            value: b.clone(),
        })),
    }
}

/// Decode a complete response.
pub fn decode_response(body: &[u8]) -> Result<Vec<StreamEvent>, ProtocolError> {
    let v: Value = parse_json(body).map_err(ProtocolError::upstream)?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(ProtocolError::upstream(format!(
            "upstream reported an error: {}",
            decode_error_message(body)
        )));
    }
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProtocolError::upstream("message has no content array"))?;
    let mut out = vec![StreamEvent::Start {
        id: v.get("id").and_then(Value::as_str).map(str::to_string),
        model: v.get("model").and_then(Value::as_str).map(str::to_string),
    }];
    let mut tools = 0;
    for b in content {
        block_events(b, &mut tools, &mut out);
    }
    if let Some(reason) = v.get("stop_reason").and_then(Value::as_str) {
        out.push(StreamEvent::Finish(Finish {
            reason: normalize_stop_reason(reason),
            native: Some(reason.to_string()),
        }));
    }
    if let Some(u) = v.get("usage") {
        out.push(StreamEvent::Usage(canonical_usage(u)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_thinking_text_and_tool_use_in_order() {
        let ev = decode_response(
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[
            {"type":"thinking","thinking":"hm","signature":"S"},{"type":"text","text":"ok"},
            {"type":"tool_use","id":"t","name":"f","input":{"a":1}},{"type":"server_tool_use","id":"s","name":"web_search","input":{}}],
            "stop_reason":"tool_use","usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":7}}"#,
        )
        .unwrap();
        let mut b = ResponseBuilder::new();
        for e in &ev {
            b.push(e);
        }
        let r = b.finish_response();
        assert_eq!(r.text.as_deref(), Some("ok"));
        assert_eq!(r.tool_calls[0].arguments, r#"{"a":1}"#);
        assert_eq!(r.finish.unwrap().reason, FinishReason::ToolCalls);
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.cache_write_tokens),
            (17, 5, 2)
        );
        assert!(matches!(ev.last().unwrap(), StreamEvent::Usage(_)));
        assert!(
            ev.iter()
                .any(|e| matches!(e, StreamEvent::Raw(r) if r.kind() == "server_tool_use"))
        );
    }
}
