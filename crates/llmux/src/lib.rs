//! llmux: a self-hostable OpenRouter. One OpenAI-compatible API in front of many providers,
//! with keys and credits, exact per-token billing, and the usage data behind rankings.
//!
//! See `ARCHITECTURE.md` for the flow and where each part lives.

#![recursion_limit = "256"]

pub mod billing;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod inbound;
pub mod metering;
pub mod metrics;
pub mod money;
pub mod pipeline;
pub mod providers;
pub mod rankings;
pub mod router;
pub mod server;
pub mod storage;
pub mod web;

/// Select the TLS crypto backend (ring) for outgoing HTTPS; call before building HTTP clients.
/// Idempotent.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
