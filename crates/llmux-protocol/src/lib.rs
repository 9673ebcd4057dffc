//! The wire formats of the LLM APIs llmux speaks, and the canonical types every one of them
//! translates to and from. Pure data and translation: no I/O, so all of it can be fuzzed.
//!
//! Each API module has up to two halves:
//! - the **inbound** half parses a client's request into a [`canonical::ChatRequest`] and renders
//!   canonical results back in the client's format;
//! - the **upstream** half encodes a canonical request for a provider and decodes the provider's
//!   response (or stream) into canonical results.
//!
//! N inbound formats plus M upstream formats make N + M translators, never N × M.

pub mod anthropic;
pub mod canonical;
pub mod error;
pub mod gemini;
mod json;
pub mod openai;
pub mod sse;

pub use error::ProtocolError;
