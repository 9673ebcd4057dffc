//! End-to-end tests: the real binary over real HTTP, against simulated providers and replayed
//! recordings.

mod billing;
mod browser;
mod chat;
mod cli;
mod cluster;
mod embeddings;
mod errors;
mod fixtures;
mod harness;
mod protocols;
mod rankings;
mod routing;
mod shutdown;
mod storage;
mod translation;
