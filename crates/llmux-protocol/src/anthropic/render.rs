//! Render canonical events as Anthropic's Message object or its SSE event stream, for clients
//! of `POST /v1/messages`.

use serde_json::{Value, json};

use super::blocks::{anthropic_usage, merge_tool_use_extra, reasoning_to_block, stop_reason_for};
use crate::canonical::*;
use crate::sse;

/// What the gateway adds to a response.
pub struct MessageMeta<'a> {
    pub id: &'a str,
    /// The model that served, as a catalog id.
    pub model: &'a str,
    pub provider: &'a str,
    pub usage: &'a Usage,
    /// The exact cost in USD, as a decimal literal.
    pub cost: &'a str,
    /// The routing decision, when the client asked for it.
    pub metadata: Option<&'a Value>,
}

fn usage_json(u: &Usage, cost: &str) -> Value {
    let mut v = anthropic_usage(u);
    if let Ok(c) = serde_json::from_str::<Value>(cost) {
        v["cost"] = c;
    }
    v
}

fn tool_input(args: &str) -> Value {
    if args.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_string()))
}

/// Fold events into Anthropic content blocks, in order.
pub fn content_blocks(events: &[StreamEvent]) -> Vec<Value> {
    enum Cur {
        None,
        Text(String),
        Thinking {
            text: String,
            signature: Option<String>,
        },
        Tool {
            id: String,
            name: String,
            args: String,
            extra: Option<RawItem>,
        },
    }
    fn close(cur: &mut Cur, out: &mut Vec<Value>) {
        match std::mem::replace(cur, Cur::None) {
            Cur::None => {}
            Cur::Text(t) => out.push(json!({"type": "text", "text": t})),
            Cur::Thinking { text, signature } => {
                out.push(json!({"type": "thinking", "thinking": text, "signature": signature.unwrap_or_default()}))
            }
            Cur::Tool { id, name, args, extra } => {
                let mut b = json!({"type": "tool_use", "id": id, "name": name, "input": tool_input(&args)});
                merge_tool_use_extra(&mut b, extra.as_ref());
                out.push(b)
            }
        }
    }
    let mut out = Vec::new();
    let mut cur = Cur::None;
    for ev in events {
        match ev {
            StreamEvent::Text(t) => match &mut cur {
                Cur::Text(s) => s.push_str(t),
                _ => {
                    close(&mut cur, &mut out);
                    cur = Cur::Text(t.clone());
                }
            },
            StreamEvent::Reasoning(ReasoningBlock::Text {
                text, signature, ..
            }) => match &mut cur {
                Cur::Thinking {
                    text: t,
                    signature: None,
                } => {
                    t.push_str(text);
                    if signature.is_some() {
                        cur = match std::mem::replace(&mut cur, Cur::None) {
                            Cur::Thinking { text, .. } => Cur::Thinking {
                                text,
                                signature: signature.clone(),
                            },
                            other => other,
                        };
                    }
                }
                _ => {
                    close(&mut cur, &mut out);
                    cur = Cur::Thinking {
                        text: text.clone(),
                        signature: signature.clone(),
                    };
                }
            },
            StreamEvent::Reasoning(b) => {
                close(&mut cur, &mut out);
                out.push(reasoning_to_block(b));
            }
            StreamEvent::ToolCallStart {
                id, name, extra, ..
            } => {
                close(&mut cur, &mut out);
                cur = Cur::Tool {
                    id: id.clone(),
                    name: name.clone(),
                    args: String::new(),
                    extra: extra.clone(),
                };
            }
            StreamEvent::ToolCallArgs { arguments, .. } => {
                if let Cur::Tool { args, .. } = &mut cur {
                    args.push_str(arguments);
                }
            }
            StreamEvent::ToolCallEnd { .. } => close(&mut cur, &mut out),
            StreamEvent::Raw(raw) if raw.protocol == Protocol::Anthropic => {
                close(&mut cur, &mut out);
                out.push(raw.value.clone());
            }
            _ => {}
        }
    }
    close(&mut cur, &mut out);
    out
}

/// A complete Message object.
pub fn render_message(
    events: &[StreamEvent],
    finish: Option<&Finish>,
    meta: &MessageMeta<'_>,
) -> Vec<u8> {
    let stop = finish.map(|f| stop_reason_for(f.reason, f.native.as_deref()));
    let mut v = json!({
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": content_blocks(events),
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage_json(meta.usage, meta.cost),
        "provider": meta.provider,
    });
    if let Some(m) = meta.metadata {
        v["openrouter_metadata"] = m.clone();
    }
    crate::json::to_vec(&v).expect("json")
}

/// Anthropic's error `type` for an HTTP status.
pub fn error_type_for(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// Anthropic's error body.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    crate::json::to_vec(
        &json!({"type": "error", "error": {"type": error_type_for(status), "message": message}}),
    )
    .expect("json")
}

#[derive(PartialEq)]
enum Open {
    None,
    Text,
    Thinking { signed: bool },
    Tool,
}

/// Writes one stream's Anthropic events.
pub struct EventWriter {
    id: String,
    model: String,
    started: bool,
    open: Open,
    index: u64,
}

impl EventWriter {
    pub fn new(id: &str, model: &str) -> Self {
        Self {
            id: id.to_string(),
            model: model.to_string(),
            started: false,
            open: Open::None,
            index: 0,
        }
    }

    fn emit(out: &mut Vec<u8>, name: &str, v: &Value) {
        sse::write_event(out, name, &crate::json::to_vec(v).expect("json"));
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        Self::emit(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open != Open::None {
            Self::emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.index}),
            );
            self.open = Open::None;
            self.index += 1;
        }
    }

    fn open_block(&mut self, kind: Open, block: Value, out: &mut Vec<u8>) {
        self.close(out);
        Self::emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.index, "content_block": block}),
        );
        self.open = kind;
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        Self::emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index, "delta": delta}),
        );
    }

    pub fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        self.start(out);
        match ev {
            StreamEvent::Text(t) => {
                if self.open != Open::Text {
                    self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
                }
                self.delta(json!({"type": "text_delta", "text": t}), out);
            }
            StreamEvent::Reasoning(ReasoningBlock::Text {
                text, signature, ..
            }) => {
                if self.open != (Open::Thinking { signed: false }) {
                    self.open_block(
                        Open::Thinking { signed: false },
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                }
                if !text.is_empty() {
                    self.delta(json!({"type": "thinking_delta", "thinking": text}), out);
                }
                if let Some(sig) = signature {
                    self.delta(json!({"type": "signature_delta", "signature": sig}), out);
                    self.open = Open::Thinking { signed: true };
                }
            }
            StreamEvent::Reasoning(b) => {
                self.open_block(Open::Thinking { signed: true }, reasoning_to_block(b), out);
                self.close(out);
            }
            StreamEvent::ToolCallStart {
                id, name, extra, ..
            } => {
                let mut b = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                merge_tool_use_extra(&mut b, extra.as_ref());
                self.open_block(Open::Tool, b, out);
            }
            StreamEvent::ToolCallArgs { arguments, .. } if self.open == Open::Tool => {
                self.delta(
                    json!({"type": "input_json_delta", "partial_json": arguments}),
                    out,
                );
            }
            StreamEvent::ToolCallEnd { .. } if self.open == Open::Tool => {
                self.close(out);
            }
            StreamEvent::Raw(raw) if raw.protocol == Protocol::Anthropic => {
                self.open_block(Open::Tool, raw.value.clone(), out);
                self.close(out);
            }
            _ => {}
        }
    }

    /// The end: `message_delta` (stop reason, final usage with cost) and `message_stop`.
    pub fn finish(
        &mut self,
        finish: Option<&Finish>,
        usage: &Usage,
        cost: &str,
        metadata: Option<&Value>,
        out: &mut Vec<u8>,
    ) {
        self.start(out);
        self.close(out);
        let stop = finish.map(|f| stop_reason_for(f.reason, f.native.as_deref()));
        let mut delta = json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                               "usage": usage_json(usage, cost)});
        if let Some(m) = metadata {
            delta["openrouter_metadata"] = m.clone();
        }
        Self::emit(out, "message_delta", &delta);
        Self::emit(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// A mid-stream error event.
    pub fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        let body: Value = serde_json::from_slice(&error_body(status, message)).expect("json");
        Self::emit(out, "error", &body);
    }
}

/// A keep-alive event.
pub const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn evs() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: None,
                model: None,
            },
            StreamEvent::Reasoning(ReasoningBlock::Text {
                text: "th".into(),
                signature: None,
                format: None,
            }),
            StreamEvent::Reasoning(ReasoningBlock::Text {
                text: "ink".into(),
                signature: Some("SIG".into()),
                format: None,
            }),
            StreamEvent::Text("Hel".into()),
            StreamEvent::Text("lo".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "t1".into(),
                name: "f".into(),
                extra: None,
            },
            StreamEvent::ToolCallArgs {
                index: 0,
                arguments: "{\"a\":".into(),
            },
            StreamEvent::ToolCallArgs {
                index: 0,
                arguments: "1}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
        ]
    }

    #[test]
    fn message_blocks_in_order() {
        let blocks = content_blocks(&evs());
        assert_eq!(
            blocks[0],
            json!({"type": "thinking", "thinking": "think", "signature": "SIG"})
        );
        assert_eq!(blocks[1], json!({"type": "text", "text": "Hello"}));
        assert_eq!(blocks[2]["input"], json!({"a": 1}));
    }

    #[test]
    fn stream_events_are_well_formed() {
        let mut w = EventWriter::new("gen-1", "a/b");
        let mut out = Vec::new();
        for e in evs() {
            w.event(&e, &mut out);
        }
        w.finish(
            Some(&Finish {
                reason: FinishReason::ToolCalls,
                native: None,
            }),
            &Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Default::default()
            },
            "0.001",
            None,
            &mut out,
        );
        let s = String::from_utf8(out).unwrap();
        let names: Vec<&str> = s
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names[0], "message_start");
        assert_eq!(
            names
                .iter()
                .filter(|n| **n == "content_block_start")
                .count(),
            3
        );
        assert_eq!(
            names.iter().filter(|n| **n == "content_block_stop").count(),
            3
        );
        assert_eq!(
            &names[names.len() - 2..],
            &["message_delta", "message_stop"]
        );
        assert!(s.contains("\"stop_reason\":\"tool_use\""));
        assert!(s.contains("\"signature_delta\""));
    }
}
