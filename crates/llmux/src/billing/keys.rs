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
    hash_hex(key).as_str().to_owned()
}

/// [`hash`] without an allocation, for looking a presented key up (every request).
pub fn hash_hex(key: &str) -> HexDigest {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(key.as_bytes()), &mut hex)
        .expect("64 hex digits for 32 bytes");
    HexDigest(hex)
}

/// A SHA-256 digest in lowercase hex.
pub struct HexDigest([u8; 64]);

impl HexDigest {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
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
        assert_eq!(hash(&k), hex::encode(Sha256::digest(k.as_bytes())));
        assert_eq!(hash_hex(&k).as_str(), hash(&k));
        assert_ne!(hash(&k), hash(&generate()));
        let l = label(&k);
        assert!(l.starts_with("sk-llmux-v1-") && l.contains("...") && !l.contains(&k[20..40]));
    }
}
