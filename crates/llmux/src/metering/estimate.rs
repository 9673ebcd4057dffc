//! Token counts estimated with a real tokenizer (OpenAI's o200k BPE), for upstreams that
//! report no usage. Records counted this way are marked `usage_estimated`.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();

fn bpe() -> Option<&'static CoreBPE> {
    BPE.get_or_init(|| match tiktoken_rs::o200k_base() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!("tokenizer unavailable, estimating by length: {e}");
            None
        }
    })
    .as_ref()
}

/// Load the tokenizer ahead of the first request that needs it.
pub fn warm_up() {
    std::thread::spawn(|| {
        bpe();
    });
}

/// Tokens in `text`.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe() {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    }
}

/// Per-message overhead of chat formatting (role markers), as OpenAI documents it.
pub const PER_MESSAGE: u64 = 4;

#[cfg(test)]
mod tests {
    #[test]
    fn counts_tokens() {
        assert_eq!(super::count(""), 0);
        let n = super::count("Hello, world! This is a test.");
        assert!((5..=10).contains(&n), "{n}");
    }
}
