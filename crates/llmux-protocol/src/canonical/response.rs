//! The canonical result of a chat request: a finish reason, content, and usage.

use super::{ReasoningBlock, StreamEvent, ToolCall, Usage};

/// Why generation stopped, normalized across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Error,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            "error" => FinishReason::Error,
            _ => return None,
        })
    }
}

/// A normalized finish reason and the upstream's own word for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub reason: FinishReason,
    pub native: Option<String>,
}

/// A complete (non-streamed) chat result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatResponse {
    /// The upstream's id for this completion.
    pub upstream_id: Option<String>,
    /// The model name the upstream reported.
    pub upstream_model: Option<String>,
    pub text: Option<String>,
    pub refusal: Option<String>,
    pub reasoning: Vec<ReasoningBlock>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<Finish>,
    pub usage: Option<Usage>,
    pub system_fingerprint: Option<String>,
}

impl ChatResponse {
    /// The readable reasoning text, concatenated.
    pub fn reasoning_text(&self) -> Option<String> {
        let mut s = String::new();
        let mut any = false;
        for b in &self.reasoning {
            match b {
                ReasoningBlock::Text { text, .. } => {
                    any = true;
                    s.push_str(text)
                }
                ReasoningBlock::Summary { summary, .. } => {
                    any = true;
                    s.push_str(summary)
                }
                ReasoningBlock::Encrypted { .. } => {}
            }
        }
        any.then_some(s)
    }

    /// The same result as a sequence of stream events (for rendering a complete result to a
    /// streaming client).
    pub fn to_events(&self) -> Vec<StreamEvent> {
        let mut ev = vec![StreamEvent::Start {
            id: self.upstream_id.clone(),
            model: self.upstream_model.clone(),
        }];
        for b in &self.reasoning {
            ev.push(StreamEvent::Reasoning(b.clone()));
        }
        if let Some(t) = &self.text {
            ev.push(StreamEvent::Text(t.clone()));
        }
        for (i, c) in self.tool_calls.iter().enumerate() {
            ev.push(StreamEvent::ToolCallStart {
                index: i,
                id: c.id.clone(),
                name: c.name.clone(),
                extra: c.extra.clone(),
            });
            ev.push(StreamEvent::ToolCallArgs {
                index: i,
                arguments: c.arguments.clone(),
            });
            ev.push(StreamEvent::ToolCallEnd { index: i });
        }
        if let Some(f) = &self.finish {
            ev.push(StreamEvent::Finish(f.clone()));
        }
        if let Some(u) = &self.usage {
            ev.push(StreamEvent::Usage(u.clone()));
        }
        ev
    }
}
