//! End-to-end tests: the real binary over real HTTP, against simulated providers and replayed
//! recordings.

mod billing;
mod chat;
mod cli;
mod embeddings;
mod errors;
mod fixtures;
mod harness;
mod protocols;
mod routing;
mod shutdown;
mod translation;
