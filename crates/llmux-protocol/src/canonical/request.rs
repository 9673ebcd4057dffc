//! The canonical chat request.

use serde_json::{Map, Value};

/// A chat request, independent of the protocol it arrived in or will leave by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    /// The requested model id, possibly with variant suffixes (`deepseek/deepseek-v3.2:nitro`).
    pub model: String,
    /// OpenRouter's ordered fallback list of models (`models: [...]`).
    pub models: Vec<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    pub stop: Vec<String>,
    pub max_tokens: Option<u32>,
    pub sampling: Sampling,
    pub reasoning: Option<ReasoningConfig>,
    pub stream: bool,
    /// End-user id (`user`).
    pub user: Option<String>,
    /// Conversation id for sticky routing (`session_id` or the `x-session-id` header).
    pub session_id: Option<String>,
    /// OpenRouter's routing preferences (`provider: {...}`), kept as sent; the router reads it.
    pub provider: Option<Value>,
    /// Legacy `route: "fallback"`.
    pub route: Option<String>,
    /// Tools in one protocol's own shape (Anthropic's server tools, ...), forwarded only to
    /// upstreams speaking that protocol.
    pub raw_tools: Vec<RawItem>,
    /// Fields this version does not model, forwarded as-is to upstreams that speak the same
    /// protocol the request arrived in (e.g. `logit_bias`, `logprobs`, `seed`).
    pub extra: Map<String, Value>,
}

/// The wire protocols llmux speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::OpenAi => "OpenAI",
            Protocol::Anthropic => "Anthropic",
            Protocol::Gemini => "Gemini",
        }
    }
}

/// Something in one protocol's own shape that the canonical types do not model (a content
/// part, a tool, a response block). It travels unchanged between peers speaking that protocol
/// and is refused (requests) or left out (responses) elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    pub protocol: Protocol,
    pub value: Value,
}

impl RawItem {
    /// The item's `type` field, for messages.
    pub fn kind(&self) -> &str {
        self.value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
    }
}

impl ChatRequest {
    /// All text of the request, for token estimates.
    pub fn text_len(&self) -> usize {
        let mut n = 0;
        for m in &self.messages {
            for p in &m.content {
                if let Part::Text { text, .. } = p {
                    n += text.len();
                }
            }
            for c in &m.tool_calls {
                n += c.name.len() + c.arguments.len();
            }
        }
        for t in &self.tools {
            n += t.name.len() + t.description.as_deref().map_or(0, str::len);
            n += t.parameters.as_ref().map_or(0, |p| p.to_string().len());
        }
        n
    }

    /// Every tool result must answer a tool call made earlier in the conversation; no
    /// provider accepts orphans, and some need the call to translate the result.
    pub fn check_tool_results(&self) -> Result<(), crate::ProtocolError> {
        let mut calls: Vec<&str> = Vec::new();
        for (i, m) in self.messages.iter().enumerate() {
            calls.extend(m.tool_calls.iter().map(|c| c.id.as_str()));
            if let Some(id) = &m.tool_call_id
                && !calls.contains(&id.as_str())
            {
                return Err(crate::ProtocolError::InvalidRequest(format!(
                    "messages[{i}]: tool result for a tool call that does not exist ({id:?})"
                )));
            }
        }
        Ok(())
    }

    pub fn has_images(&self) -> bool {
        self.messages
            .iter()
            .any(|m| m.content.iter().any(|p| matches!(p, Part::Image { .. })))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
    /// The sender's content was a bare string, not an array of parts; re-encoding keeps that.
    pub content_is_text: bool,
    pub name: Option<String>,
    /// Tool calls made by an assistant turn.
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the call it answers.
    pub tool_call_id: Option<String>,
    /// Reasoning an assistant turn produced, echoed back on the next turn (signatures,
    /// encrypted or redacted blocks must come back unchanged).
    pub reasoning: Vec<ReasoningBlock>,
    /// A tool result reported as an error (Anthropic `is_error`).
    pub is_error: bool,
}

impl Message {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            content: Vec::new(),
            content_is_text: false,
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning: Vec::new(),
            is_error: false,
        }
    }

    pub fn text(role: Role, text: impl Into<String>) -> Self {
        let mut m = Self::new(role);
        m.content.push(Part::text(text));
        m.content_is_text = true;
        m
    }

    /// The concatenated text parts.
    pub fn joined_text(&self) -> String {
        let mut s = String::new();
        for p in &self.content {
            if let Part::Text { text, .. } = p {
                s.push_str(text);
            }
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text {
        text: String,
        cache_control: Option<CacheControl>,
    },
    Image {
        source: ImageSource,
        /// OpenAI's `detail` (`auto|low|high`).
        detail: Option<String>,
        cache_control: Option<CacheControl>,
    },
    /// A content part this version does not model (audio, documents, server-tool results,
    /// ...), kept as sent.
    Raw(RawItem),
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            cache_control: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Url(String),
    Base64 { media_type: String, data: String },
}

impl ImageSource {
    /// Parse an OpenAI `image_url.url`, which may be a `data:` URL.
    pub fn from_url(url: &str) -> Self {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((meta, data)) = rest.split_once(',')
            && let Some(media_type) = meta.strip_suffix(";base64")
        {
            return ImageSource::Base64 {
                media_type: media_type.to_string(),
                data: data.to_string(),
            };
        }
        ImageSource::Url(url.to_string())
    }

    /// The OpenAI form: a URL, or a `data:` URL for inline bytes.
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url(u) => u.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// A prompt-cache marker (`cache_control: {"type": "ephemeral", "ttl": "1h"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheControl {
    pub ttl: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text, exactly as the model produced them.
    pub arguments: String,
    /// Fields of the call only one protocol has (Anthropic's `caller`), as an object, kept
    /// for peers speaking that protocol.
    pub extra: Option<RawItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON schema of the arguments.
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
    pub cache_control: Option<CacheControl>,
    /// Fields of the tool definition this version does not model (e.g. Anthropic's
    /// `defer_loading`), forwarded only to upstreams of the request's own protocol.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
        description: Option<String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub min_p: Option<f64>,
    pub top_a: Option<f64>,
    pub seed: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    XHigh,
}

impl Effort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Effort::None,
            "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" => Effort::High,
            "xhigh" => Effort::XHigh,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::None => "none",
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::XHigh => "xhigh",
        }
    }
}

/// OpenRouter's `reasoning: {effort, max_tokens, exclude, enabled}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReasoningConfig {
    pub effort: Option<Effort>,
    pub max_tokens: Option<u32>,
    /// Reason, but do not return the reasoning to the client.
    pub exclude: bool,
    pub enabled: Option<bool>,
}

impl ReasoningConfig {
    /// A thinking budget in tokens for providers that take one: the explicit `max_tokens`, else
    /// OpenRouter's share of the completion limit for the effort (xhigh 95%, high 80%, medium
    /// 50%, low 20%, minimal 10%), at least 1024.
    pub fn budget(&self, max_tokens: u32) -> u32 {
        if let Some(b) = self.max_tokens {
            return b.max(1024);
        }
        let share = match self.effort.unwrap_or(Effort::Medium) {
            Effort::XHigh => 0.95,
            Effort::High => 0.8,
            Effort::Medium => 0.5,
            Effort::Low => 0.2,
            Effort::Minimal | Effort::None => 0.1,
        };
        ((max_tokens as f64 * share) as u32).max(1024)
    }

    /// Whether reasoning is asked for at all.
    pub fn is_on(&self) -> bool {
        match self.enabled {
            Some(e) => e,
            None => self.max_tokens.is_some() || self.effort.is_some_and(|e| e != Effort::None),
        }
    }
}

/// One piece of reasoning, in the forms the providers use. Text is shown to the user; signatures
/// and encrypted data are opaque and must travel back to the same provider family unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasoningBlock {
    /// Readable thinking, with Anthropic's `signature` or Gemini's `thoughtSignature` when given.
    Text {
        text: String,
        signature: Option<String>,
        format: Option<String>,
    },
    /// A summary of hidden reasoning (OpenAI `reasoning.summary`).
    Summary {
        summary: String,
        format: Option<String>,
    },
    /// Opaque reasoning (`redacted_thinking`, OpenAI `encrypted_content`, Gemini's
    /// `thoughtSignature`); `id` names the tool call it belongs to, where it belongs to one.
    Encrypted {
        data: String,
        format: Option<String>,
        id: Option<String>,
    },
}
