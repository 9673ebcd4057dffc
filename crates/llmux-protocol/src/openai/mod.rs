//! OpenAI Chat Completions: as clients send it (with OpenRouter's extensions: `models`,
//! `provider`, `reasoning`, ...) and as the many OpenAI-compatible providers serve it.
//!
//! - [`parse_request`]: client JSON → canonical request (inbound).
//! - [`render`]: canonical response / stream events → OpenRouter-shaped JSON and SSE chunks.
//! - [`encode_request`]: canonical request → upstream JSON.
//! - [`decode_response`], [`StreamDecoder`]: upstream JSON / SSE → canonical.

mod inbound_request;
mod reasoning_details;
pub mod render;
mod upstream_request;
mod upstream_response;
mod upstream_stream;

pub use inbound_request::parse_request;
pub use upstream_request::{Dialect, EncodeOptions, encode_request};
pub use upstream_response::{decode_error_message, decode_response, normalize_finish};
pub use upstream_stream::StreamDecoder;
