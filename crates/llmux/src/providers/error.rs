//! Typed upstream failures: where they came from and whether another endpoint may succeed.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No connection could be made.
    Connect,
    /// No answer (or no first token) in time, or a stream fell silent.
    Timeout,
    /// The upstream answered with an error status.
    Status(u16),
    /// The answer is not valid in the upstream's protocol (or too large).
    InvalidResponse,
    /// The connection broke while reading.
    Broken,
}

#[derive(Debug, Clone)]
pub struct UpstreamError {
    pub kind: UpstreamErrorKind,
    pub message: String,
    /// The upstream's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl UpstreamError {
    pub fn new(kind: UpstreamErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether the next endpoint may succeed where this one failed. Client mistakes (400,
    /// 413, 422) would fail everywhere; everything else is the provider's problem.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            UpstreamErrorKind::Status(s) => !matches!(s, 400 | 413 | 422),
            _ => true,
        }
    }

    /// The upstream status, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            UpstreamErrorKind::Status(s) => Some(s),
            _ => None,
        }
    }

    /// OpenRouter's `error_type` vocabulary.
    pub fn error_type(&self) -> &'static str {
        match self.kind {
            UpstreamErrorKind::Status(429) => "rate_limit_exceeded",
            UpstreamErrorKind::Status(401 | 403) => "authentication",
            UpstreamErrorKind::Status(400 | 422) => "invalid_request",
            UpstreamErrorKind::Status(413) => "payload_too_large",
            UpstreamErrorKind::Status(_) => "provider_unavailable",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Connect | UpstreamErrorKind::Broken => "provider_unavailable",
            UpstreamErrorKind::InvalidResponse => "server",
        }
    }

    /// The status llmux answers with when this is the final failure.
    pub fn client_status(&self) -> u16 {
        match self.kind {
            UpstreamErrorKind::Status(s @ (400 | 413 | 422 | 429)) => s,
            UpstreamErrorKind::Timeout => 408,
            _ => 502,
        }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
