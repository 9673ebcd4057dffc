//! Decode an OpenAI-compatible upstream's SSE stream (`chat.completion.chunk`s) into canonical
//! stream events.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::reasoning_details;
use super::upstream_response::{WireMessage, WireUsage, arguments_text, normalize_finish};
use crate::ProtocolError;
use crate::canonical::*;
use crate::error::parse_json;

#[derive(Deserialize)]
struct WireChunk<'a> {
    /// Borrowed from the event (every chunk repeats them; only the first one's are kept).
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    delta: Option<WireMessage>,
    finish_reason: Option<String>,
}

struct ToolSlot {
    upstream_index: u32,
    canonical: usize,
    started: bool,
    open: bool,
    id: Option<String>,
    name: Option<String>,
    pending_args: String,
}

/// Decoder state for one stream.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    tools: Vec<ToolSlot>,
    finished: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode one SSE event's data. Returns `true` when the upstream signalled the end
    /// (`[DONE]`).
    pub fn decode(
        &mut self,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProtocolError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.close_tools(out);
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let c: WireChunk = parse_json(data.as_bytes())
            .map_err(|e| ProtocolError::upstream(format!("malformed stream chunk: {e}")))?;
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: c.id.map(Cow::into_owned),
                model: c.model.map(Cow::into_owned),
            });
        }
        if let Some(e) = c.error.filter(|e| !e.is_null()) {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            let code = e.get("code").filter(|c| !c.is_null()).map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            out.push(StreamEvent::Error(StreamError { message, code }));
        }
        if let Some(choice) = c.choices.into_iter().next() {
            if let Some(delta) = choice.delta {
                self.delta(delta, out);
            }
            if let Some(native) = choice.finish_reason
                && !self.finished
            {
                self.finished = true;
                self.close_tools(out);
                out.push(StreamEvent::Finish(Finish {
                    reason: normalize_finish(&native),
                    native: Some(native),
                }));
            }
        }
        if let Some(u) = c.usage {
            out.push(StreamEvent::Usage(u.canonical()));
        }
        Ok(false)
    }

    fn delta(&mut self, d: WireMessage, out: &mut Vec<StreamEvent>) {
        let details = d
            .reasoning_details
            .as_ref()
            .map(reasoning_details::decode_lenient)
            .unwrap_or_default();
        if !details.is_empty() {
            for (_, b) in details {
                let empty = matches!(&b, ReasoningBlock::Text { text, signature: None, .. } if text.is_empty());
                if !empty {
                    out.push(StreamEvent::Reasoning(b));
                }
            }
        } else if let Some(t) = d
            .reasoning_content
            .or(d.reasoning)
            .filter(|t| !t.is_empty())
        {
            out.push(StreamEvent::Reasoning(ReasoningBlock::Text {
                text: t,
                signature: None,
                format: None,
            }));
        }
        if let Some(t) = d.content.0.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::Text(t));
        }
        if let Some(r) = d.refusal.filter(|r| !r.is_empty()) {
            out.push(StreamEvent::Text(r));
        }
        for call in d.tool_calls.unwrap_or_default() {
            let upstream_index = call.index.unwrap_or(self.tools.len() as u32);
            let pos = match self
                .tools
                .iter()
                .position(|t| t.upstream_index == upstream_index)
            {
                Some(p) => p,
                None => {
                    let canonical = self.tools.len();
                    self.tools.push(ToolSlot {
                        upstream_index,
                        canonical,
                        started: false,
                        open: false,
                        id: None,
                        name: None,
                        pending_args: String::new(),
                    });
                    canonical
                }
            };
            let slot = &mut self.tools[pos];
            if slot.id.is_none() {
                slot.id = call.id.filter(|s| !s.is_empty());
            }
            let (name, args) = match call.function {
                Some(f) => (f.name, arguments_text(&f.arguments)),
                None => (None, String::new()),
            };
            if slot.name.is_none() {
                slot.name = name.filter(|s| !s.is_empty());
            }
            if !slot.started {
                slot.pending_args.push_str(&args);
                // Start once the name is known; arguments seen before that are held.
                if let Some(name) = slot.name.clone() {
                    slot.started = true;
                    slot.open = true;
                    let id = slot
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("call_{}", slot.canonical));
                    out.push(StreamEvent::ToolCallStart {
                        index: slot.canonical,
                        id,
                        name,
                        extra: None,
                    });
                    let pending = std::mem::take(&mut slot.pending_args);
                    if !pending.is_empty() {
                        out.push(StreamEvent::ToolCallArgs {
                            index: slot.canonical,
                            arguments: pending,
                        });
                    }
                }
            } else if !args.is_empty() {
                out.push(StreamEvent::ToolCallArgs {
                    index: slot.canonical,
                    arguments: args,
                });
            }
        }
    }

    fn close_tools(&mut self, out: &mut Vec<StreamEvent>) {
        for t in &mut self.tools {
            if t.open {
                t.open = false;
                out.push(StreamEvent::ToolCallEnd { index: t.canonical });
            }
        }
    }

    /// The upstream closed the stream; close whatever is still open.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.close_tools(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&str]) -> Vec<StreamEvent> {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.decode(c, &mut out).unwrap();
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn tool_call_deltas() {
        let ev = decode(&[
            r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]},"finish_reason":null}]}"#,
            r#"{"id":"a","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"c\""}}]},"finish_reason":null}]}"#,
            r#"{"id":"a","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":null}]}"#,
            r#"{"id":"a","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"a","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#,
            "[DONE]",
        ]);
        let mut b = ResponseBuilder::new();
        for e in &ev {
            b.push(e);
        }
        let r = b.finish_response();
        assert_eq!(r.tool_calls.len(), 1);
        assert_eq!(r.tool_calls[0].id, "call_1");
        assert_eq!(r.tool_calls[0].arguments, "{\"c\":1}");
        assert_eq!(r.finish.unwrap().reason, FinishReason::ToolCalls);
        assert_eq!(r.usage.unwrap().completion_tokens, 3);
        assert!(ev.contains(&StreamEvent::ToolCallEnd { index: 0 }));
    }

    #[test]
    fn escaped_ids_and_content_are_read() {
        let ev = decode(&[
            r#"{"id":"chat\u0041-\"1\"","model":"m\/x","choices":[{"index":0,"delta":{"content":"\u00e9\n"},"finish_reason":null}]}"#,
            r#"{"id":"other","choices":[{"index":0,"delta":{"content":[{"type":"text","text":"!"}]},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ]);
        let StreamEvent::Start { id, model } = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(id.as_deref(), Some("chatA-\"1\""));
        assert_eq!(model.as_deref(), Some("m/x"));
        let text: Vec<&str> = ev
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, ["é\n", "!"]);
    }

    #[test]
    fn malformed_chunk_is_an_error() {
        let mut d = StreamDecoder::new();
        assert!(d.decode("{not json", &mut Vec::new()).is_err());
    }
}
