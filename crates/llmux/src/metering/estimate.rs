//! Token counts estimated with a real tokenizer (OpenAI's o200k BPE), for upstreams that
//! report no usage. Records counted this way are marked `usage_estimated`.
//!
//! The vocabulary is kept compact: every token's bytes in one buffer and a table of ranks
//! keyed by them, about 4 MB resident. tiktoken-rs (which the tests check the counts against)
//! keeps each token three times over in maps of small allocations, 40 MB resident for the
//! life of the process: a sixth of what 10,000 open streams take.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// OpenAI's published o200k vocabulary, unchanged: one token per line, its bytes in base64
/// and its rank (SHA-256 `446a9538...1a2d`, checked by a test).
const O200K_BASE: &str = include_str!("../../tokenizer/o200k_base.tiktoken");

/// How o200k splits text into pieces before merging bytes within each (tiktoken's pattern).
const O200K_PIECES: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

static BPE: OnceLock<Option<Bpe>> = OnceLock::new();

fn bpe() -> Option<&'static Bpe> {
    BPE.get_or_init(|| match Bpe::parse(O200K_BASE, O200K_PIECES) {
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
        Some(b) => b.count(text) as u64,
        None => by_length(text.len()),
    }
}

fn by_length(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Per-message overhead of chat formatting (role markers), as OpenAI documents it.
pub const PER_MESSAGE: u64 = 4;

/// A byte-pair vocabulary, for counting.
struct Bpe {
    /// Every token's bytes, one after another, in rank order.
    bytes: Vec<u8>,
    /// Where each rank's bytes end in `bytes` (rank `r` spans `ends[r - 1]..ends[r]`).
    ends: Vec<u32>,
    /// Ranks, found by their bytes.
    ranks: HashTable<u32>,
    pieces: fancy_regex::Regex,
}

impl Bpe {
    /// A vocabulary in tiktoken's format (`base64 rank` lines, ranks from 0 in order).
    fn parse(vocabulary: &str, pieces: &str) -> anyhow::Result<Bpe> {
        use base64::Engine;
        let lines = vocabulary.lines().count();
        let mut bpe = Bpe {
            bytes: Vec::with_capacity(vocabulary.len() / 2),
            ends: Vec::with_capacity(lines),
            ranks: HashTable::new(),
            pieces: fancy_regex::Regex::new(pieces)?,
        };
        for (n, line) in vocabulary.lines().enumerate() {
            let (token, rank) = line
                .split_once(' ')
                .ok_or_else(|| anyhow::anyhow!("line {}: no rank", n + 1))?;
            anyhow::ensure!(
                rank.parse::<usize>()? == n,
                "line {}: rank out of order",
                n + 1
            );
            base64::engine::general_purpose::STANDARD.decode_vec(token, &mut bpe.bytes)?;
            bpe.ends.push(u32::try_from(bpe.bytes.len())?);
        }
        bpe.bytes.shrink_to_fit();
        let mut ranks = HashTable::with_capacity(bpe.ends.len());
        for rank in 0..bpe.ends.len() as u32 {
            let hash = FxBuildHasher.hash_one(bpe.token(rank));
            ranks.insert_unique(hash, rank, |&r| FxBuildHasher.hash_one(bpe.token(r)));
        }
        bpe.ranks = ranks;
        Ok(bpe)
    }

    fn token(&self, rank: u32) -> &[u8] {
        let r = rank as usize;
        let start = if r == 0 { 0 } else { self.ends[r - 1] as usize };
        &self.bytes[start..self.ends[r] as usize]
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let hash = FxBuildHasher.hash_one(bytes);
        self.ranks.find(hash, |&r| self.token(r) == bytes).copied()
    }

    /// Tokens in `text` (special tokens' text counted as ordinary text).
    fn count(&self, text: &str) -> usize {
        let (mut n, mut counted) = (0, 0);
        for piece in self.pieces.find_iter(text) {
            match piece {
                Ok(p) => {
                    n += self.count_piece(p.as_str().as_bytes());
                    counted = p.end();
                }
                // The pattern gave up (its backtracking limit): the rest by length.
                Err(_) => return n + by_length(text.len() - counted) as usize,
            }
        }
        n
    }

    /// Tokens in one piece, by byte-pair merging: adjacent parts whose join is a token merge,
    /// lowest rank first, until no join is one.
    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() < 2 || self.rank(piece).is_some() {
            return piece.len().min(1);
        }
        // Each part's start, and the rank of it joined with the next part (MAX: no token).
        let mut parts: Vec<(usize, u32)> = (0..piece.len() - 1)
            .map(|i| (i, self.rank(&piece[i..i + 2]).unwrap_or(u32::MAX)))
            .collect();
        parts.push((piece.len() - 1, u32::MAX));
        parts.push((piece.len(), u32::MAX));
        // The rank of part `i` joined with the next, once that has absorbed the one after it.
        let joined = |parts: &[(usize, u32)], i: usize| {
            parts
                .get(i + 3)
                .and_then(|end| self.rank(&piece[parts[i].0..end.0]))
                .unwrap_or(u32::MAX)
        };
        loop {
            let (i, rank) = parts[..parts.len() - 1]
                .iter()
                .enumerate()
                .map(|(i, &(_, r))| (i, r))
                .min_by_key(|&(_, r)| r)
                .unwrap_or((0, u32::MAX));
            if rank == u32::MAX {
                return parts.len() - 1;
            }
            if i > 0 {
                parts[i - 1].1 = joined(&parts, i - 1);
            }
            parts[i].1 = joined(&parts, i);
            parts.remove(i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    #[test]
    fn counts_tokens() {
        assert_eq!(super::count(""), 0);
        let n = super::count("Hello, world! This is a test.");
        assert!((5..=10).contains(&n), "{n}");
    }

    #[test]
    fn the_vocabulary_is_openais() {
        let digest = sha2::Sha256::digest(super::O200K_BASE.as_bytes());
        assert_eq!(
            hex::encode(digest),
            "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
        );
    }

    /// The same counts as tiktoken-rs's o200k encoder, over this repository's own prose, code
    /// and catalog, and text chosen for the pattern's corners (CJK, emoji, contractions,
    /// runs of whitespace, long digit runs, pieces no single token covers).
    #[test]
    fn counts_as_tiktoken_does() {
        let reference = tiktoken_rs::o200k_base().expect("tiktoken-rs loads o200k");
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut texts: Vec<String> = [
            "README.md",
            "ARCHITECTURE.md",
            "PERFORMANCE.md",
            "crates/llmux/src/metering/estimate.rs",
            "crates/llmux/src/pipeline/stream.rs",
            "crates/llmux/catalog/models.json",
        ]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{root}/{f}")).expect(f))
        .collect();
        texts.extend(
            [
                "日本語のテキストとEnglish mixed, 中文文本。한국어 텍스트",
                "🎉🎉 emoji 👨‍👩‍👧 ZWJ sequences and flags 🇫🇷🇯🇵",
                "I'M sure they'LL say it's what we'd've DON'T can't",
                "   leading\t\ttabs   \r\n\r\n   trailing   \n\n\n",
                "1234567890123 3.14159 1e-9 0x7fff_ffff",
                "supercalifragilisticexpialidocious antidisestablishmentarianism",
                "<|endoftext|> is ordinary text here",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "\u{0301}\u{0301}combining marks ñ ñ ÅÄÖ",
            ]
            .map(String::from),
        );
        let (mut pieces, mut tokens) = (0, 0);
        for text in &texts {
            // In pieces, so that a difference points at the text that shows it.
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let mut end = rest.len().min(2000);
                while !rest.is_char_boundary(end) {
                    end += 1;
                }
                let (piece, after) = rest.split_at(end);
                let expected = reference.encode_ordinary(piece).len();
                assert_eq!(super::count(piece) as usize, expected, "{piece:?}");
                (pieces, tokens) = (pieces + 1, tokens + expected);
                rest = after;
            }
        }
        assert!(
            pieces > 100 && tokens > 100_000,
            "{pieces} pieces, {tokens} tokens"
        );
    }
}
