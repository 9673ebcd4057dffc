//! The model level: a requested id, with its `:variant` suffixes, resolved to a catalog model.

use std::sync::Arc;

use crate::catalog::{Catalog, Model};

/// What `:nitro`, `:floor`, `:free` and `:thinking` ask for (chainable: `a/b:free:nitro`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Variants {
    /// Sort by throughput.
    pub nitro: bool,
    /// Sort by price.
    pub floor: bool,
    /// Only free endpoints, under the free-model rate limits.
    pub free: bool,
    /// Reasoning on.
    pub thinking: bool,
}

pub enum Resolved {
    Model(Arc<Model>, Variants),
    Unknown,
    UnknownVariant(String),
}

/// Resolve `requested`: an exact catalog id first (the catalog has ids such as
/// `minimax/minimax-m2.5:free`), else the id before its suffixes, with the suffixes as variants.
pub fn resolve(catalog: &Catalog, requested: &str) -> Resolved {
    if let Some(m) = catalog.model(requested) {
        let free = requested.ends_with(":free");
        let thinking = requested.ends_with(":thinking");
        return Resolved::Model(
            m.clone(),
            Variants {
                free,
                thinking,
                ..Default::default()
            },
        );
    }
    let mut parts = requested.split(':');
    let base = parts.next().unwrap_or_default();
    let Some(model) = catalog.model(base) else {
        return Resolved::Unknown;
    };
    let mut v = Variants::default();
    for suffix in parts {
        match suffix {
            "nitro" => v.nitro = true,
            "floor" => v.floor = true,
            "free" => v.free = true,
            "thinking" => v.thinking = true,
            // Deprecated or without effect here: accepted, as OpenRouter accepts them.
            "extended" | "online" | "exacto" => {}
            other => return Resolved::UnknownVariant(other.to_string()),
        }
    }
    Resolved::Model(model.clone(), v)
}
