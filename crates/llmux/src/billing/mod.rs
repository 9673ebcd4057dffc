//! Billing: who may call (keys), what they may spend (credits), and the reservations that keep
//! concurrent requests from overspending.
//!
//! The hot path never touches the database: keys and balances are served from memory. A
//! request reserves its worst-case cost before going upstream and settles to the actual cost
//! afterwards; the charge itself is persisted with the generation record (see
//! [`crate::metering`]). A background task picks up changes made elsewhere (keys disabled,
//! credits added by the CLI or another node) within [`SYNC_INTERVAL`].

pub mod admin;
mod book;
pub mod byok;
pub mod keys;

pub use book::{
    Account, AuthError, Billing, KeyContext, KeyUsage, RateUnit, Reservation, ReserveError,
    SYNC_INTERVAL, window_start,
};
