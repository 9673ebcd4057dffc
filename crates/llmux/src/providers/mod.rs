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
mod http1_pool;
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
    pub uri: ::http::Uri,
    pub headers: ::http::HeaderMap,
    pub body: Bytes,
}

const USER_AGENT: ::http::HeaderValue =
    ::http::HeaderValue::from_static(concat!("llmux/", env!("CARGO_PKG_VERSION")));

/// What every request to an endpoint repeats: its URL and its fixed headers, the provider's
/// key among them.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub uri: ::http::Uri,
    pub headers: ::http::HeaderMap,
}

impl RequestHead {
    /// `{base_url}{path}`, with `headers` (each appended, so a name may repeat), then the
    /// provider's own, and llmux's `User-Agent` unless the provider's has one.
    pub fn new(
        provider: &crate::catalog::Provider,
        path: &str,
        headers: impl IntoIterator<Item = (::http::HeaderName, ::http::HeaderValue)>,
    ) -> Result<RequestHead, ProtocolError> {
        let url = format!("{}{path}", provider.base_url);
        let uri = ::http::Uri::try_from(url.as_str())
            .map_err(|e| ProtocolError::unsupported(format!("invalid upstream URL {url}: {e}")))?;
        let mut map = ::http::HeaderMap::new();
        for (k, v) in headers.into_iter().chain(provider.headers.iter().cloned()) {
            map.append(k, v);
        }
        // A provider's configured User-Agent wins over llmux's own.
        map.entry(::http::header::USER_AGENT).or_insert(USER_AGENT);
        Ok(RequestHead { uri, headers: map })
    }

    /// A request with this head and `body`.
    pub fn request(&self, body: Vec<u8>) -> UpstreamRequest {
        UpstreamRequest {
            uri: self.uri.clone(),
            headers: self.headers.clone(),
            body: Bytes::from(body),
        }
    }
}

/// An endpoint's [`RequestHead`]s, for whole and for streamed answers, each made by the
/// adapter on first use: formatting and parsing the URL and the key's header again for every
/// request took about 2,500 instructions (`bench/instructions.sh`).
#[derive(Debug, Default)]
pub struct RequestHeads([std::sync::OnceLock<RequestHead>; 2]);

impl RequestHeads {
    pub fn get_or_make(
        &self,
        stream: bool,
        make: impl FnOnce() -> Result<RequestHead, ProtocolError>,
    ) -> Result<&RequestHead, ProtocolError> {
        let cell = &self.0[usize::from(stream)];
        if let Some(head) = cell.get() {
            return Ok(head);
        }
        // Two threads may both make it the first time; one is kept, and they are the same.
        let _ = cell.set(make()?);
        Ok(cell.get().expect("just set"))
    }
}

/// A header value holding a secret: never written to logs, never indexed by HTTP/2's
/// header compression.
pub fn secret_header(value: &str) -> Result<::http::HeaderValue, ProtocolError> {
    let mut v = ::http::HeaderValue::try_from(value)
        .map_err(|_| ProtocolError::unsupported("the provider key is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
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
