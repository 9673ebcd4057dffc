//! Provider adapters: one per upstream protocol. Each turns a canonical request into an HTTP
//! request for an endpoint, and the upstream's answer (whole or streamed) back into canonical
//! results. The many OpenAI-compatible providers share one adapter, told apart by dialect.
//!
//! Adding a provider protocol: implement [`Adapter`] (and an [`EventDecoder`] for its stream)
//! in a module here, backed by the wire-format code in `llmux-protocol`, and return it from
//! [`adapter_for`].

mod anthropic;
mod error;
mod gemini;
mod http;
mod openai;

use bytes::Bytes;
use llmux_protocol::ProtocolError;
use llmux_protocol::canonical::{ChatRequest, StreamEvent};
use llmux_protocol::sse::SseEvent;

pub use error::{UpstreamError, UpstreamErrorKind};
pub use http::{SseReader, Upstream};
pub use openai::{OpenAiAdapter, embeddings_request};

use crate::catalog::{Api, Endpoint};

/// An HTTP request ready to send upstream.
pub struct UpstreamRequest {
    pub url: String,
    pub headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
    pub body: Bytes,
}

/// Facts about the call that shape the upstream request.
pub struct BuildContext<'a> {
    pub endpoint: &'a Endpoint,
    pub stream: bool,
    /// The client spoke this adapter's protocol, so fields llmux does not model can be
    /// forwarded unchanged.
    pub same_protocol: bool,
    /// The client's `anthropic-beta` header, for Anthropic upstreams.
    pub anthropic_beta: Option<&'a str>,
    /// The account's own key for this provider (BYOK), used instead of the provider's.
    pub credential: Option<&'a str>,
}

impl BuildContext<'_> {
    /// The key to send upstream: the account's own, else the provider's.
    pub fn secret(&self) -> Option<&str> {
        self.credential
            .or_else(|| self.endpoint.provider.credential.secret())
    }
}

pub trait Adapter: Send + Sync {
    fn build(
        &self,
        req: &ChatRequest,
        ctx: &BuildContext<'_>,
    ) -> Result<UpstreamRequest, ProtocolError>;
    /// A whole answer, as canonical events in content order.
    fn decode_response(&self, body: &[u8]) -> Result<Vec<StreamEvent>, ProtocolError>;
    fn stream_decoder(&self) -> Box<dyn EventDecoder>;
    /// The readable message of an error body.
    fn error_message(&self, body: &[u8]) -> String;
}

/// Turns one upstream's SSE events into canonical events.
pub trait EventDecoder: Send {
    /// Returns true once the upstream signalled the end of the stream.
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProtocolError>;
    /// The byte stream ended; close what is open.
    fn finish(&mut self, out: &mut Vec<StreamEvent>);
}

pub fn adapter_for(api: Api) -> &'static dyn Adapter {
    match api {
        Api::OpenAi => &openai::OpenAiAdapter,
        Api::Anthropic => &anthropic::AnthropicAdapter,
        Api::Gemini => &gemini::GeminiAdapter,
    }
}
