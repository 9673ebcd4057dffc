//! BYOK ("bring your own key"): an account's own key for a provider, sealed at rest with
//! AES-256-GCM under the server's secrets key (`LLMUX_SECRETS_KEY`, 32 bytes as hex or
//! base64). Requests from the account use it first (`prioritized`) or after the shared
//! endpoints (`fallback`), and are charged a fee instead of the price.
//!
//! The key is never logged (its `Debug` is redacted) and never returned by any API.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use rand::RngCore;

use crate::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByokMode {
    /// Tried before the shared endpoints.
    Prioritized,
    /// Tried after the shared endpoints.
    Fallback,
}

impl ByokMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prioritized" => Some(Self::Prioritized),
            "fallback" => Some(Self::Fallback),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prioritized => "prioritized",
            Self::Fallback => "fallback",
        }
    }
}

/// An account's opened key for one provider.
pub struct ByokKey {
    pub provider: String,
    pub mode: ByokMode,
    secret: String,
}

impl std::fmt::Debug for ByokKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ByokKey({}, {}, <redacted>)",
            self.provider,
            self.mode.as_str()
        )
    }
}

impl ByokKey {
    pub fn new(provider: String, mode: ByokMode, secret: String) -> Self {
        Self {
            provider,
            mode,
            secret,
        }
    }
    /// Only the request builder reads this.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// Seals and opens BYOK keys.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    /// The sealer for the key in environment variable `var`; None when it is unset.
    pub fn from_env(var: &str) -> anyhow::Result<Option<Sealer>> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Sealer::from_text(v.trim())
                .with_context(|| var.to_string())
                .map(Some),
            _ => Ok(None),
        }
    }

    /// From 32 bytes written as 64 hex digits or base64.
    pub fn from_text(text: &str) -> anyhow::Result<Sealer> {
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .context("the secrets key must be 32 bytes, as 64 hex digits or base64")?;
        if bytes.len() != 32 {
            bail!("the secrets key must be 32 bytes (it is {})", bytes.len());
        }
        Ok(Sealer {
            cipher: Aes256Gcm::new_from_slice(&bytes).context("secrets key")?,
        })
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(&Nonce::from(nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption does not fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> anyhow::Result<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .context("sealed key is not base64")?;
        if raw.len() < 13 {
            bail!("sealed key is too short");
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().expect("split at 12");
        let pt = self
            .cipher
            .decrypt(&Nonce::from(nonce), ct)
            .map_err(|_| anyhow::anyhow!("sealed key does not open with this secrets key"))?;
        String::from_utf8(pt).context("sealed key is not UTF-8")
    }
}

/// The BYOK fee: a share of the price, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fee {
    pub ppm: i64,
}

impl Fee {
    /// From a percentage such as `"5"` or `"2.5"`.
    pub fn percent(text: &str) -> anyhow::Result<Fee> {
        let d: rust_decimal::Decimal = text
            .trim()
            .parse()
            .context("byok_fee_percent must be a number")?;
        if d.is_sign_negative() || d > rust_decimal::Decimal::from(100) {
            bail!("byok_fee_percent must be between 0 and 100");
        }
        let ppm = (d * rust_decimal::Decimal::from(10_000)).round();
        Ok(Fee {
            ppm: i64::try_from(ppm).context("byok_fee_percent")?,
        })
    }

    /// The fee on `cost`, rounded half up to the picodollar.
    pub fn on(self, cost: Money) -> Money {
        let v = (cost.0 as i128 * self.ppm as i128 + 500_000) / 1_000_000;
        Money(v as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens() {
        let s = Sealer::from_text(&"ab".repeat(32)).unwrap();
        let sealed = s.seal("sk-upstream-secret");
        assert!(!sealed.contains("secret"));
        assert_eq!(s.open(&sealed).unwrap(), "sk-upstream-secret");
        let other = Sealer::from_text(&"cd".repeat(32)).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(Sealer::from_text("short").is_err());
        let k = ByokKey::new("p".into(), ByokMode::Fallback, "sk-x".into());
        assert!(!format!("{k:?}").contains("sk-x"));
    }

    #[test]
    fn fee_is_exact_and_rounded() {
        let f = Fee::percent("5").unwrap();
        assert_eq!(f.on(Money(1_000_000)), Money(50_000));
        assert_eq!(f.on(Money(3625)), Money(181)); // 181.25
        assert_eq!(Fee::percent("2.5").unwrap().on(Money(1000)), Money(25));
        assert!(Fee::percent("-1").is_err());
    }
}
