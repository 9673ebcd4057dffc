//! Anthropic Messages: as clients send it (`POST /v1/messages`, with OpenRouter's extras such
//! as `models` and `provider`) and as Anthropic serves it.
//!
//! - [`parse_request`]: client JSON → canonical request (inbound).
//! - [`render`]: canonical events → a Message object or Anthropic's SSE events.
//! - [`encode_request`]: canonical request → upstream JSON.
//! - [`decode_response`], [`StreamDecoder`]: upstream JSON / SSE → canonical events.

mod blocks;
mod inbound_request;
pub mod render;
mod upstream_request;
mod upstream_response;
mod upstream_stream;

pub use blocks::{anthropic_usage, normalize_stop_reason, stop_reason_for};
pub use inbound_request::parse_request;
pub use upstream_request::{EncodeOptions, encode_request};
pub use upstream_response::{decode_error_message, decode_response};
pub use upstream_stream::StreamDecoder;

/// OpenRouter's `format` for Anthropic reasoning in `reasoning_details`.
pub const REASONING_FORMAT: &str = "anthropic-claude-v1";

/// The `anthropic-version` header llmux speaks.
pub const API_VERSION: &str = "2023-06-01";
