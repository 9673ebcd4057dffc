//! A simulated LLM provider: a real HTTP server that speaks the OpenAI chat-completions and
//! embeddings protocols, Anthropic Messages and Gemini generateContent, with deterministic
//! output, exact usage, and knobs for latency and failures. Tests, benchmarks and `llmux serve --demo` use it.
//!
//! It deliberately shares no code with the gateway's translators, so that tests run each
//! translator against an independent implementation of the wire format.
//!
//! Behaviour is steered three ways:
//! - process defaults ([`SimConfig`], from `llmux sim` flags);
//! - directives in the upstream model name, `+`-separated: `sim+fail=503+retry_after=2`,
//!   `sim+ttft=300`, `sim+tps=50`, `sim+tokens=40`, `sim+disconnect=5`, `sim+malformed=3`,
//!   `sim+stall=2`, `sim+no_usage`, `sim+reasoning` (see [`directives`]);
//! - the control API: `POST /_sim/control` sets a fault for every request (or for one model)
//!   until cleared, and `GET /_sim/requests` lists the requests received.

mod anthropic;
pub mod directives;
mod embeddings;
mod gemini;
mod log;
mod openai;
mod script;
mod server;

pub use directives::{Directives, Fault};
pub use log::RecordedRequest;
pub use server::{SimConfig, SimHandle, SimState, router, spawn};
