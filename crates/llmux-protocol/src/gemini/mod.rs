//! Google Gemini's `generateContent` API, as upstream: `:generateContent` for whole answers,
//! `:streamGenerateContent?alt=sse` for streams.
//!
//! - [`encode_request`]: canonical request → Gemini JSON (contents, systemInstruction, tools,
//!   toolConfig, generationConfig).
//! - [`decode_response`], [`StreamDecoder`]: Gemini responses → canonical events. Thought
//!   signatures become opaque reasoning blocks tied to their function call, so the next turn
//!   can carry them back.

mod upstream_request;
mod upstream_response;

pub use upstream_request::{EncodeOptions, encode_request};
pub use upstream_response::{StreamDecoder, decode_response};

/// OpenRouter's `format` for Gemini reasoning in `reasoning_details`.
pub const REASONING_FORMAT: &str = "google-gemini-v1";

/// Google's documented placeholder for function calls whose thought signature is unknown (a
/// history written by another model).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";
