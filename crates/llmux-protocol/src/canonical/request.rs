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
    /// Fields this version does not model, forwarded as-is to upstreams that speak the same
    /// protocol the request arrived in (e.g. `logit_bias`, `logprobs`, `seed`).
    pub extra: Map<String, Value>,
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
    /// A content part this version does not model (audio, files, ...), kept as sent. It is
    /// forwarded to upstreams of the protocol it came in and refused by the others.
    Raw { kind: String, value: Value },
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text, exactly as the model produced them.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON schema of the arguments.
    pub parameters: Option<Value>,
    pub strict: Option<bool>,
    pub cache_control: Option<CacheControl>,
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
