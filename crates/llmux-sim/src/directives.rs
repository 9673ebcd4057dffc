//! Per-request behaviour: process defaults, overridden by directives in the model name,
//! overridden by faults set through the control API.

use serde::{Deserialize, Serialize};

/// A failure to inject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// Answer with this HTTP status and a provider-style error body.
    Status { code: u16, retry_after: Option<u64> },
    /// Close the connection after this many output tokens were streamed.
    Disconnect { after_tokens: usize },
    /// Send a chunk that is not valid JSON after this many tokens.
    Malformed { after_tokens: usize },
    /// Stop sending (but keep the connection open) after this many tokens.
    Stall { after_tokens: usize },
}

/// The knobs for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Directives {
    /// Delay before the first output token.
    pub ttft_ms: u64,
    /// Output pace; 0 sends everything at once.
    pub tokens_per_sec: f64,
    /// Answer length in tokens when `max_tokens` does not cut it shorter.
    pub tokens: usize,
    /// Report usage in streams (some providers do not).
    pub usage: bool,
    /// Think before answering even when the request does not ask to.
    pub reasoning: bool,
    pub fault: Option<Fault>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            ttft_ms: 0,
            tokens_per_sec: 0.0,
            tokens: 16,
            usage: true,
            reasoning: false,
            fault: None,
        }
    }
}

impl Directives {
    /// Apply `+key=value` directives found in a model name such as `sim+fail=503+ttft=20`.
    pub fn apply_model_name(&mut self, model: &str) {
        let mut retry_after = None;
        let mut status = None;
        for d in model.split('+').skip(1) {
            let (k, v) = d.split_once('=').unwrap_or((d, ""));
            let n = v.parse::<u64>().ok();
            match (k, n) {
                ("fail", Some(code)) => status = Some(code as u16),
                ("retry_after", Some(s)) => retry_after = Some(s),
                ("ttft", Some(ms)) => self.ttft_ms = ms,
                ("tps", _) => self.tokens_per_sec = v.parse().unwrap_or(0.0),
                ("tokens", Some(t)) => self.tokens = t as usize,
                ("disconnect", Some(t)) => {
                    self.fault = Some(Fault::Disconnect {
                        after_tokens: t as usize,
                    })
                }
                ("malformed", Some(t)) => {
                    self.fault = Some(Fault::Malformed {
                        after_tokens: t as usize,
                    })
                }
                ("stall", Some(t)) => {
                    self.fault = Some(Fault::Stall {
                        after_tokens: t as usize,
                    })
                }
                ("no_usage", _) => self.usage = false,
                ("reasoning", _) => self.reasoning = true,
                _ => {}
            }
        }
        if let Some(code) = status {
            self.fault = Some(Fault::Status { code, retry_after });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_directives() {
        let mut d = Directives::default();
        d.apply_model_name("sim+fail=429+retry_after=3+ttft=20+tokens=5+no_usage");
        assert_eq!(
            d.fault,
            Some(Fault::Status {
                code: 429,
                retry_after: Some(3)
            })
        );
        assert_eq!((d.ttft_ms, d.tokens, d.usage), (20, 5, false));
    }
}
