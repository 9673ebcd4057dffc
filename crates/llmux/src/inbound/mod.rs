//! Inbound protocols: the APIs clients speak to llmux. Each parses its request into the
//! canonical request, hands it to the [pipeline](crate::pipeline), and renders canonical
//! results and errors back in its own format ([`Format`]).
//!
//! Adding an inbound protocol: write its wire translation in `llmux-protocol`, a handler and a
//! [`Format`] here, and mount the route in [`crate::server`].

pub mod anthropic_messages;
pub mod embeddings;
pub mod openai_chat;

use llmux_protocol::canonical::{ChatResponse, Finish, StreamEvent, Usage};

use crate::catalog::Api;
use crate::money::Money;
use crate::server::error::ApiError;

/// What the gateway knows about a served generation beyond the upstream's answer.
pub struct Served<'a> {
    pub id: &'a str,
    /// The catalog model that served.
    pub model: &'a str,
    pub provider_name: &'a str,
    pub created: i64,
    pub usage: &'a Usage,
    pub cost: Money,
    pub is_byok: bool,
    /// The routing decision, when the client asked for it.
    pub metadata: Option<&'a serde_json::Value>,
}

/// How one inbound protocol renders results.
pub trait Format: Send + Sync + 'static {
    /// The record's `api_type` (`completions`, `messages`).
    fn api_type(&self) -> &'static str;
    /// Whether requests in this format may pass unmodelled fields to an upstream speaking `api`.
    fn same_protocol(&self, api: Api) -> bool;
    /// A whole answer: its events in content order, and the same folded into a response.
    fn render_complete(
        &self,
        events: &[StreamEvent],
        resp: &ChatResponse,
        served: &Served<'_>,
    ) -> Vec<u8>;
    /// A writer for one stream, served by `model` at `provider_name`.
    fn stream_writer(
        &self,
        id: &str,
        model: &str,
        provider_name: &str,
        created: i64,
    ) -> Box<dyn StreamWriter>;
    /// The error body in this protocol's shape.
    fn error_body(&self, err: &ApiError) -> Vec<u8>;
    /// Bytes that keep a stream alive without content (an SSE comment).
    fn keepalive(&self) -> &'static [u8] {
        b": OPENROUTER PROCESSING\n\n"
    }
}

pub trait StreamWriter: Send {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>);
    /// The end of a successful stream: usage (with cost), then the terminator.
    fn finish(
        &mut self,
        finish: Option<&Finish>,
        usage: &Usage,
        cost: Money,
        is_byok: bool,
        metadata: Option<&serde_json::Value>,
        out: &mut Vec<u8>,
    );
    /// A mid-stream error, then the terminator.
    fn error(&mut self, status: u16, message: &str, error_type: &str, out: &mut Vec<u8>);
}
