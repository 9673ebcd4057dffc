//! Decode Anthropic's SSE events (`message_start`, `content_block_*`, `message_delta`,
//! `message_stop`, `ping`, `error`) into canonical stream events.

use serde_json::Value;

use super::REASONING_FORMAT;
use super::blocks::{canonical_usage, normalize_stop_reason, tool_use_extra};
use crate::ProtocolError;
use crate::canonical::*;

enum Block {
    Text,
    Thinking,
    Tool(usize),
    /// A block kept whole (server tools and their results); its streamed input is gathered.
    Raw {
        block: Value,
        input: String,
    },
    Other,
}

#[derive(Default)]
pub struct StreamDecoder {
    blocks: Vec<(u64, Block)>,
    tools: usize,
    usage: Value,
    done: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self {
            usage: Value::Object(Default::default()),
            ..Default::default()
        }
    }

    fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    fn merge_usage(&mut self, u: &Value) {
        if let (Some(dst), Some(src)) = (self.usage.as_object_mut(), u.as_object()) {
            for (k, v) in src {
                if v.is_number() {
                    dst.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// Decode one event (`event:` name and its JSON). Returns true at `message_stop`.
    pub fn decode(
        &mut self,
        event: Option<&str>,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<bool, ProtocolError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ProtocolError::upstream(format!("malformed stream event: {e}")))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(event)
            .unwrap_or("");
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                let m = &v["message"];
                out.push(StreamEvent::Start {
                    id: m.get("id").and_then(Value::as_str).map(str::to_string),
                    model: m.get("model").and_then(Value::as_str).map(str::to_string),
                });
                if let Some(u) = m.get("usage") {
                    self.merge_usage(u);
                }
            }
            "content_block_start" => {
                let b = &v["content_block"];
                let s = |k: &str| {
                    b.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let block = match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = s("text");
                        if !t.is_empty() {
                            out.push(StreamEvent::Text(t));
                        }
                        Block::Text
                    }
                    Some("thinking") => {
                        let t = s("thinking");
                        if !t.is_empty() {
                            out.push(StreamEvent::Reasoning(ReasoningBlock::Text {
                                text: t,
                                signature: None,
                                format: Some(REASONING_FORMAT.into()),
                            }));
                        }
                        Block::Thinking
                    }
                    Some("redacted_thinking") => {
                        out.push(StreamEvent::Reasoning(ReasoningBlock::Encrypted {
                            data: s("data"),
                            format: Some(REASONING_FORMAT.into()),
                            id: None,
                        }));
                        Block::Other
                    }
                    Some("tool_use") => {
                        let i = self.tools;
                        self.tools += 1;
                        out.push(StreamEvent::ToolCallStart {
                            index: i,
                            id: s("id"),
                            name: s("name"),
                            extra: tool_use_extra(b),
                        });
                        Block::Tool(i)
                    }
                    _ => Block::Raw {
                        block: b.clone(),
                        input: String::new(),
                    },
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let d = &v["delta"];
                let s = |k: &str| {
                    d.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                match (d.get("type").and_then(Value::as_str), self.block(index)) {
                    (Some("text_delta"), _) => {
                        let t = s("text");
                        if !t.is_empty() {
                            out.push(StreamEvent::Text(t));
                        }
                    }
                    (Some("thinking_delta"), _) => {
                        let t = s("thinking");
                        if !t.is_empty() {
                            out.push(StreamEvent::Reasoning(ReasoningBlock::Text {
                                text: t,
                                signature: None,
                                format: Some(REASONING_FORMAT.into()),
                            }));
                        }
                    }
                    (Some("signature_delta"), _) => {
                        out.push(StreamEvent::Reasoning(ReasoningBlock::Text {
                            text: String::new(),
                            signature: Some(s("signature")),
                            format: Some(REASONING_FORMAT.into()),
                        }))
                    }
                    (Some("input_json_delta"), Some(Block::Tool(i))) => {
                        let i = *i;
                        let p = s("partial_json");
                        if !p.is_empty() {
                            out.push(StreamEvent::ToolCallArgs {
                                index: i,
                                arguments: p,
                            });
                        }
                    }
                    (Some("input_json_delta"), Some(Block::Raw { input, .. })) => {
                        input.push_str(&s("partial_json"))
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(pos) = self.blocks.iter().position(|(i, _)| *i == index) {
                    match self.blocks.remove(pos).1 {
                        Block::Tool(i) => out.push(StreamEvent::ToolCallEnd { index: i }),
                        Block::Raw { mut block, input } => {
                            if !input.is_empty()
                                && let Ok(parsed) = serde_json::from_str::<Value>(&input)
                            {
                                block["input"] = parsed;
                            }
                            out.push(StreamEvent::Raw(RawItem {
                                protocol: Protocol::Anthropic,
                                value: block,
                            }));
                        }
                        Block::Text | Block::Thinking | Block::Other => {}
                    }
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    self.merge_usage(u);
                }
                if let Some(reason) = v["delta"].get("stop_reason").and_then(Value::as_str) {
                    out.push(StreamEvent::Finish(Finish {
                        reason: normalize_stop_reason(reason),
                        native: Some(reason.to_string()),
                    }));
                }
                out.push(StreamEvent::Usage(canonical_usage(&self.usage)));
            }
            "message_stop" => {
                self.done = true;
                return Ok(true);
            }
            "error" => out.push(StreamEvent::Error(StreamError {
                message: v["error"]
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_string(),
                code: v["error"]
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })),
            _ => {} // ping and events added later
        }
        Ok(false)
    }

    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        for (_, b) in self.blocks.drain(..) {
            if let Block::Tool(i) = b {
                out.push(StreamEvent::ToolCallEnd { index: i });
            }
        }
    }
}
