//! Render canonical results as OpenRouter-shaped chat completions: one JSON object, or SSE
//! chunks ending with a usage chunk (`choices: []`) and `data: [DONE]`.

use serde::Serialize;
use sonic_rs::RawNumber;

use super::reasoning_details::{self, Detail};
use crate::canonical::*;
use crate::sse;

/// What the gateway knows about a generation beyond the upstream's answer.
pub struct ResponseMeta<'a> {
    /// llmux's generation id (`gen-...`).
    pub id: &'a str,
    /// The model that served, as a catalog id.
    pub model: &'a str,
    pub created: i64,
    /// The provider's display name.
    pub provider: &'a str,
    pub usage: &'a Usage,
    /// The exact cost in USD, as a decimal number literal.
    pub cost: &'a str,
    pub is_byok: bool,
    /// `reasoning.exclude`: reason, but do not show the reasoning.
    pub exclude_reasoning: bool,
    /// The routing decision, when the client asked for it (`X-OpenRouter-Metadata`).
    pub metadata: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct UsageOut<'a> {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cost: &'a RawNumber,
    is_byok: bool,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
    cost_details: CostDetails<'a>,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct CostDetails<'a> {
    upstream_inference_cost: Option<&'a RawNumber>,
}

/// A decimal literal written as it is, digit for digit (money is never a float here).
/// sonic-rs's own type, since answers are written by sonic-rs ([`crate::json::write`]).
fn raw_number(s: &str) -> RawNumber {
    // The gateway hands over decimal literals; anything else is a bug, rendered as 0.
    let number = |s: &str| sonic_rs::from_str::<RawNumber>(s).ok();
    s.bytes()
        .next()
        .filter(|b| *b == b'-' || b.is_ascii_digit())
        .and_then(|_| number(s))
        .unwrap_or_else(|| number("0").expect("literal"))
}

fn write_usage<T>(
    usage: &Usage,
    cost: &str,
    is_byok: bool,
    f: impl FnOnce(&UsageOut<'_>) -> T,
) -> T {
    let cost = raw_number(cost);
    let upstream = usage.upstream_cost.as_deref().map(raw_number);
    let u = UsageOut {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total(),
        cost: &cost,
        is_byok,
        prompt_tokens_details: PromptDetails {
            cached_tokens: usage.cached_tokens,
            cache_write_tokens: usage.cache_write_tokens,
        },
        completion_tokens_details: CompletionDetails {
            reasoning_tokens: usage.reasoning_tokens,
        },
        cost_details: CostDetails {
            upstream_inference_cost: upstream.as_ref(),
        },
    };
    f(&u)
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    provider: &'a str,
    model: &'a str,
    object: &'static str,
    created: i64,
    system_fingerprint: Option<&'a str>,
    choices: [Choice<'a>; 1],
    usage: &'a UsageOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    openrouter_metadata: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    native_finish_reason: Option<&'a str>,
    message: MessageOut<'a>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    reasoning: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasoning_details: Vec<Detail<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

/// Render a complete response.
pub fn render_response(resp: &ChatResponse, meta: &ResponseMeta<'_>) -> Vec<u8> {
    let (reasoning, reasoning_details) = if meta.exclude_reasoning {
        (None, Vec::new())
    } else {
        (
            resp.reasoning_text(),
            resp.reasoning
                .iter()
                .enumerate()
                .map(|(i, b)| reasoning_details::render(b, i))
                .collect(),
        )
    };
    let tool_calls = resp
        .tool_calls
        .iter()
        .map(|c| ToolCallOut {
            index: None,
            id: Some(&c.id),
            kind: Some("function"),
            function: FunctionOut {
                name: Some(&c.name),
                arguments: &c.arguments,
            },
        })
        .collect();
    write_usage(meta.usage, meta.cost, meta.is_byok, |usage| {
        let c = Completion {
            id: meta.id,
            provider: meta.provider,
            model: meta.model,
            object: "chat.completion",
            created: meta.created,
            system_fingerprint: resp.system_fingerprint.as_deref(),
            choices: [Choice {
                index: 0,
                logprobs: None,
                finish_reason: resp.finish.as_ref().map(|f| f.reason.as_str()),
                native_finish_reason: resp.finish.as_ref().and_then(|f| f.native.as_deref()),
                message: MessageOut {
                    role: "assistant",
                    content: resp.text.as_deref(),
                    refusal: resp.refusal.as_deref(),
                    reasoning,
                    reasoning_details,
                    tool_calls,
                },
            }],
            usage,
            openrouter_metadata: meta.metadata,
        };
        // Sized for a typical answer, so the serializer does not grow it step by step.
        let mut out = Vec::with_capacity(768 + resp.text.as_deref().map_or(0, str::len));
        crate::json::write(&mut out, &c);
        out
    })
}

#[derive(Serialize)]
struct Chunk<'a, C: Serialize> {
    id: &'a str,
    provider: &'a str,
    model: &'a str,
    object: &'static str,
    created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ChunkError<'a>>,
    choices: C,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a UsageOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    openrouter_metadata: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct ChunkError<'a> {
    code: u16,
    message: &'a str,
    metadata: ErrorMeta<'a>,
}

#[derive(Serialize)]
struct ErrorMeta<'a> {
    error_type: &'a str,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
    native_finish_reason: Option<&'a str>,
    logprobs: Option<()>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_details: Option<[Detail<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

/// Writes one stream's chunks. Every chunk carries the same id, model and provider.
pub struct ChunkWriter {
    id: String,
    model: String,
    provider: String,
    created: i64,
    exclude_reasoning: bool,
    reasoning_index: usize,
    reasoning_open: bool,
}

impl ChunkWriter {
    pub fn new(
        id: &str,
        model: &str,
        provider: &str,
        created: i64,
        exclude_reasoning: bool,
    ) -> Self {
        Self {
            id: id.to_string(),
            model: model.to_string(),
            provider: provider.to_string(),
            created,
            exclude_reasoning,
            reasoning_index: 0,
            reasoning_open: false,
        }
    }

    fn chunk(&self, delta: Delta<'_>, finish: Option<&Finish>, out: &mut Vec<u8>) {
        let c = Chunk {
            id: &self.id,
            provider: &self.provider,
            model: &self.model,
            object: "chat.completion.chunk",
            created: self.created,
            error: None,
            choices: [ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(|f| f.reason.as_str()),
                native_finish_reason: finish.and_then(|f| f.native.as_deref()),
                logprobs: None,
            }],
            usage: None,
            openrouter_metadata: None,
        };
        sse::write_json(out, &c);
    }

    /// Append the chunk (if any) for one canonical event.
    pub fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match ev {
            StreamEvent::Start { .. } => self.chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Default::default()
                },
                None,
                out,
            ),
            StreamEvent::Text(t) => self.chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(t),
                    ..Default::default()
                },
                None,
                out,
            ),
            StreamEvent::Reasoning(b) => {
                if self.exclude_reasoning {
                    return;
                }
                let text = match b {
                    ReasoningBlock::Text { text, .. } if !text.is_empty() => Some(text.as_str()),
                    ReasoningBlock::Summary { summary, .. } => Some(summary.as_str()),
                    _ => None,
                };
                self.reasoning_open = true;
                let index = self.reasoning_index;
                // A signature or an opaque block closes the current reasoning block.
                let closes = match b {
                    ReasoningBlock::Text { signature, .. } => signature.is_some(),
                    _ => true,
                };
                self.chunk(
                    Delta {
                        role: Some("assistant"),
                        content: Some(""),
                        reasoning: text,
                        reasoning_details: Some([reasoning_details::render(b, index)]),
                        ..Default::default()
                    },
                    None,
                    out,
                );
                if closes {
                    self.reasoning_index += 1;
                    self.reasoning_open = false;
                }
            }
            StreamEvent::ToolCallStart {
                index, id, name, ..
            } => self.chunk(
                Delta {
                    role: Some("assistant"),
                    tool_calls: Some([ToolCallOut {
                        index: Some(*index),
                        id: Some(id),
                        kind: Some("function"),
                        function: FunctionOut {
                            name: Some(name),
                            arguments: "",
                        },
                    }]),
                    ..Default::default()
                },
                None,
                out,
            ),
            StreamEvent::ToolCallArgs { index, arguments } => self.chunk(
                Delta {
                    role: Some("assistant"),
                    tool_calls: Some([ToolCallOut {
                        index: Some(*index),
                        id: None,
                        kind: None,
                        function: FunctionOut {
                            name: None,
                            arguments,
                        },
                    }]),
                    ..Default::default()
                },
                None,
                out,
            ),
            StreamEvent::Finish(f) => self.chunk(
                Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Default::default()
                },
                Some(f),
                out,
            ),
            // Usage is written once, by `usage`, with the cost; errors by `error`.
            StreamEvent::ToolCallEnd { .. }
            | StreamEvent::Usage(_)
            | StreamEvent::Error(_)
            | StreamEvent::Raw(_) => {}
        }
    }

    /// The final usage chunk (`choices: []`), with the routing decision when asked for.
    pub fn usage(
        &self,
        usage: &Usage,
        cost: &str,
        is_byok: bool,
        metadata: Option<&serde_json::Value>,
        out: &mut Vec<u8>,
    ) {
        write_usage(usage, cost, is_byok, |u| {
            let c = Chunk {
                id: &self.id,
                provider: &self.provider,
                model: &self.model,
                object: "chat.completion.chunk",
                created: self.created,
                error: None,
                choices: [(); 0],
                usage: Some(u),
                openrouter_metadata: metadata,
            };
            sse::write_json(out, &c);
        })
    }

    /// A mid-stream error in OpenRouter's shape: HTTP stays 200, the chunk carries `error`
    /// and a choice finishing with `error`.
    pub fn error(&self, code: u16, message: &str, error_type: &str, out: &mut Vec<u8>) {
        let c = Chunk {
            id: &self.id,
            provider: &self.provider,
            model: &self.model,
            object: "chat.completion.chunk",
            created: self.created,
            error: Some(ChunkError {
                code,
                message,
                metadata: ErrorMeta { error_type },
            }),
            choices: [ChunkChoice {
                index: 0,
                delta: Delta {
                    content: Some(""),
                    ..Default::default()
                },
                finish_reason: Some("error"),
                native_finish_reason: None,
                logprobs: None,
            }],
            usage: None,
            openrouter_metadata: None,
        };
        sse::write_json(out, &c);
    }

    pub fn done(out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn renders_usage_cost_as_exact_number() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            ..Default::default()
        };
        let resp = ChatResponse {
            text: Some("hi".into()),
            finish: Some(Finish {
                reason: FinishReason::Stop,
                native: Some("stop".into()),
            }),
            ..Default::default()
        };
        let out = render_response(
            &resp,
            &ResponseMeta {
                id: "gen-1",
                model: "a/b",
                created: 1,
                provider: "P",
                usage: &usage,
                cost: "0.0000049",
                is_byok: false,
                exclude_reasoning: false,
                metadata: None,
            },
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("\"cost\":0.0000049"), "{s}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 15);
        assert!(v["system_fingerprint"].is_null());

        // What is not a decimal literal is a bug upstream of here, written as 0, never as
        // something that is not JSON.
        for bad in ["NaN", "inf", "", "1.5x", "\"2\""] {
            let meta = ResponseMeta {
                id: "gen-1",
                model: "a/b",
                created: 1,
                provider: "P",
                usage: &usage,
                cost: bad,
                is_byok: false,
                exclude_reasoning: false,
                metadata: None,
            };
            let v: Value = serde_json::from_slice(&render_response(&resp, &meta)).unwrap();
            assert_eq!(v["usage"]["cost"], 0, "{bad:?}");
        }
    }

    #[test]
    fn stream_chunks_have_finish_reason_key() {
        let mut w = ChunkWriter::new("gen-1", "a/b", "P", 1, false);
        let mut out = Vec::new();
        w.event(&StreamEvent::Text("x".into()), &mut out);
        let usage = Usage {
            upstream_cost: Some("0.5".into()),
            ..Default::default()
        };
        // More digits than a float holds: written digit for digit.
        w.usage(
            &usage,
            "0.000000123456789012345678901",
            false,
            None,
            &mut out,
        );
        w.error(502, "boom", "provider_unavailable", &mut out);
        ChunkWriter::done(&mut out);
        let s = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("data: {")).collect();
        let first: Value = serde_json::from_str(&lines[0][6..]).unwrap();
        assert!(
            first["choices"][0]
                .as_object()
                .unwrap()
                .contains_key("finish_reason")
        );
        let usage: Value = serde_json::from_str(&lines[1][6..]).unwrap();
        assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
        assert!(
            lines[1].contains("\"cost\":0.000000123456789012345678901,"),
            "{}",
            lines[1]
        );
        assert_eq!(
            usage["usage"]["cost_details"]["upstream_inference_cost"],
            0.5
        );
        let err: Value = serde_json::from_str(&lines[2][6..]).unwrap();
        assert_eq!(err["error"]["code"], 502);
        assert_eq!(err["choices"][0]["finish_reason"], "error");
        assert!(s.ends_with("data: [DONE]\n\n"));
    }
}
