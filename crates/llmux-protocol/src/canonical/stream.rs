//! Canonical stream events, and the accumulator that folds them into a [`ChatResponse`].

use super::{ChatResponse, Finish, ReasoningBlock, ToolCall, Usage};

/// One step of a streamed generation. Upstream decoders produce these; inbound renderers
/// consume them.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The upstream's id and model name, as soon as they are known.
    Start {
        id: Option<String>,
        model: Option<String>,
    },
    /// A piece of the answer text.
    Text(String),
    /// A piece of reasoning: text deltas arrive as `Text` blocks with no signature; a
    /// signature arrives as an empty-text block carrying it; opaque blocks arrive whole.
    Reasoning(ReasoningBlock),
    /// A tool call begins. `index` counts tool calls from 0 within the response.
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
        /// Protocol-specific fields of the call (see [`super::ToolCall::extra`]).
        extra: Option<super::RawItem>,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolCallArgs {
        index: usize,
        arguments: String,
    },
    /// A tool call's arguments are complete.
    ToolCallEnd {
        index: usize,
    },
    /// Token usage so far (the last one reported wins).
    Usage(Usage),
    Finish(Finish),
    /// The upstream reported an error mid-stream.
    Error(StreamError),
    /// A whole response block in one protocol's own shape (e.g. Anthropic's `server_tool_use`),
    /// rendered to clients of that protocol and left out for the others.
    Raw(super::RawItem),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub message: String,
    /// The upstream's error code or type, if it gave one.
    pub code: Option<String>,
}

/// Folds stream events into a complete response, and counts what was produced so far (for
/// cancelled streams and for estimating usage when the upstream reports none).
#[derive(Debug, Default, Clone)]
pub struct ResponseBuilder {
    resp: ChatResponse,
    text: String,
    has_text: bool,
    tool_index: Vec<usize>,
    error: Option<StreamError>,
}

impl ResponseBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::Start { id, model } => {
                if id.is_some() {
                    self.resp.upstream_id.clone_from(id);
                }
                if model.is_some() {
                    self.resp.upstream_model.clone_from(model);
                }
            }
            StreamEvent::Text(t) => {
                self.has_text = true;
                self.text.push_str(t);
            }
            StreamEvent::Reasoning(b) => self.push_reasoning(b),
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                extra,
            } => {
                self.tool_index.push(*index);
                self.resp.tool_calls.push(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    extra: extra.clone(),
                });
            }
            StreamEvent::ToolCallArgs { index, arguments } => {
                if let Some(pos) = self.tool_index.iter().rposition(|i| i == index) {
                    self.resp.tool_calls[pos].arguments.push_str(arguments);
                }
            }
            StreamEvent::ToolCallEnd { .. } | StreamEvent::Raw(_) => {}
            StreamEvent::Usage(u) => self.resp.usage = Some(u.clone()),
            StreamEvent::Finish(f) => self.resp.finish = Some(f.clone()),
            StreamEvent::Error(e) => self.error = Some(e.clone()),
        }
    }

    fn push_reasoning(&mut self, b: &ReasoningBlock) {
        if let (
            ReasoningBlock::Text {
                text,
                signature,
                format,
            },
            Some(ReasoningBlock::Text {
                text: last_text,
                signature: last_sig @ None,
                format: last_format,
            }),
        ) = (b, self.resp.reasoning.last_mut())
        {
            // Deltas of one thinking block: extend it until its signature arrives.
            last_text.push_str(text);
            if signature.is_some() {
                last_sig.clone_from(signature);
            }
            if last_format.is_none() {
                last_format.clone_from(format);
            }
            return;
        }
        self.resp.reasoning.push(b.clone());
    }

    pub fn upstream_id(&self) -> Option<&str> {
        self.resp.upstream_id.as_deref()
    }

    pub fn error(&self) -> Option<&StreamError> {
        self.error.as_ref()
    }

    pub fn usage(&self) -> Option<&Usage> {
        self.resp.usage.as_ref()
    }

    pub fn finish(&self) -> Option<&Finish> {
        self.resp.finish.as_ref()
    }

    /// Bytes of output produced so far (text, reasoning, tool arguments), for estimates.
    pub fn output_text(&self) -> String {
        let mut s = self.text.clone();
        for b in &self.resp.reasoning {
            if let ReasoningBlock::Text { text, .. } = b {
                s.push_str(text);
            }
        }
        for c in &self.resp.tool_calls {
            s.push_str(&c.name);
            s.push_str(&c.arguments);
        }
        s
    }

    pub fn finish_response(mut self) -> ChatResponse {
        if self.has_text {
            self.resp.text = Some(self.text);
        }
        self.resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::FinishReason;

    #[test]
    fn folds_text_tools_reasoning_and_usage() {
        let mut b = ResponseBuilder::new();
        let evs = [
            StreamEvent::Start {
                id: Some("x".into()),
                model: Some("m".into()),
            },
            StreamEvent::Reasoning(ReasoningBlock::Text {
                text: "think ".into(),
                signature: None,
                format: None,
            }),
            StreamEvent::Reasoning(ReasoningBlock::Text {
                text: "more".into(),
                signature: None,
                format: None,
            }),
            StreamEvent::Reasoning(ReasoningBlock::Text {
                text: String::new(),
                signature: Some("sig".into()),
                format: None,
            }),
            StreamEvent::Text("Hel".into()),
            StreamEvent::Text("lo".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
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
            StreamEvent::Finish(Finish {
                reason: FinishReason::ToolCalls,
                native: Some("tool_use".into()),
            }),
            StreamEvent::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Default::default()
            }),
        ];
        for e in &evs {
            b.push(e);
        }
        let r = b.finish_response();
        assert_eq!(r.text.as_deref(), Some("Hello"));
        assert_eq!(r.tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(
            r.reasoning,
            vec![ReasoningBlock::Text {
                text: "think more".into(),
                signature: Some("sig".into()),
                format: None
            }]
        );
        assert_eq!(r.usage.unwrap().completion_tokens, 4);
        assert_eq!(r.finish.unwrap().reason, FinishReason::ToolCalls);
    }
}
