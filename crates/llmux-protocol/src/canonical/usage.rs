//! Token usage, normalized across providers.

/// Token counts for one generation. `prompt_tokens` counts every input token, cached or not
/// (OpenAI's convention); `completion_tokens` counts every output token, reasoning included.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
    /// What the upstream itself says the call cost (OpenRouter-style upstreams), as a decimal.
    pub upstream_cost: Option<String>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}
