//! The non-inference API routes: catalog, generations, keys, health.

pub mod account;
pub mod generation;
pub mod health;
pub mod key;
pub mod models;
pub mod rankings;
