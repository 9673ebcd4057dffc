//! API key material: generation, hashing, labels.

use rand::RngCore;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "sk-llmux-v1-";

/// A new random key (`sk-llmux-v1-` + 64 hex digits, 256 bits).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// The stored identity of a key: SHA-256, hex.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A recognizable but harmless rendering of a key: `sk-llmux-v1-3f2...9ab`.
pub fn label(key: &str) -> String {
    let body = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    if body.len() < 8 {
        return format!("{KEY_PREFIX}...");
    }
    format!("{KEY_PREFIX}{}...{}", &body[..3], &body[body.len() - 3..])
}

/// A random identifier with a prefix (`acct_...`).
pub fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_and_label() {
        let k = generate();
        assert!(k.starts_with(KEY_PREFIX));
        assert_eq!(k.len(), KEY_PREFIX.len() + 64);
        assert_eq!(hash(&k).len(), 64);
        assert_ne!(hash(&k), hash(&generate()));
        let l = label(&k);
        assert!(l.starts_with("sk-llmux-v1-") && l.contains("...") && !l.contains(&k[20..40]));
    }
}
