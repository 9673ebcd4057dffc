//! Providers: where an upstream API lives, how to authenticate, which dialect it speaks.

use std::time::Duration;

use anyhow::{Context, bail};
use http::{HeaderName, HeaderValue};
use llmux_protocol::openai::Dialect;

use crate::config::ProviderSection;

/// The wire protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Api {
    pub fn parse(s: &str) -> Option<Api> {
        Some(match s {
            "openai" => Api::OpenAi,
            "anthropic" => Api::Anthropic,
            "gemini" => Api::Gemini,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
            Api::Gemini => "gemini",
        }
    }
}

/// How llmux authenticates to a provider. Never a bare string passed around: the secret is
/// only read where the request is built.
#[derive(Clone)]
pub enum Credential {
    /// No key (local servers such as llama.cpp or Ollama).
    None,
    /// A key from an environment variable, read at start.
    Env { var: String, value: Option<String> },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Env { var, value } => {
                write!(
                    f,
                    "Env({var}, {})",
                    if value.is_some() { "set" } else { "unset" }
                )
            }
        }
    }
}

impl Credential {
    pub fn secret(&self) -> Option<&str> {
        match self {
            Credential::None => None,
            Credential::Env { value, .. } => value.as_deref(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub slug: String,
    pub name: String,
    pub api: Api,
    /// The API root without a trailing slash (`https://api.deepseek.com/v1`).
    pub base_url: String,
    pub credential: Credential,
    pub dialect: Dialect,
    pub stream_usage: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub idle_timeout: Duration,
    pub http2_prior_knowledge: bool,
    pub simulated: bool,
    /// The provider may store or train on prompts.
    pub collects_data: bool,
    /// Zero data retention.
    pub zdr: bool,
}

/// The dialect an OpenAI-compatible provider most likely speaks, from its slug or URL.
fn guess_dialect(slug: &str, base_url: &str) -> Dialect {
    let s = format!("{slug} {base_url}").to_ascii_lowercase();
    if s.contains("openrouter") {
        Dialect::OpenRouter
    } else if slug == "openai" || s.contains("api.openai.com") {
        Dialect::OpenAi
    } else if [
        "deepseek", "moonshot", "kimi", "zhipu", "z-ai", "bigmodel", "minimax",
    ]
    .iter()
    .any(|k| s.contains(k))
    {
        Dialect::DeepSeek
    } else {
        Dialect::Generic
    }
}

impl Provider {
    pub(super) fn from_config(p: &ProviderSection) -> anyhow::Result<Provider> {
        if p.slug.is_empty() || p.slug.contains(char::is_whitespace) {
            bail!("providers: slug {:?} must be a non-empty word", p.slug);
        }
        let api = Api::parse(&p.api).with_context(|| {
            format!(
                "provider {}: api {:?} (expected openai, anthropic or gemini)",
                p.slug, p.api
            )
        })?;
        let base_url = p.base_url.trim_end_matches('/').to_string();
        let http_scheme = base_url.starts_with("http://") || base_url.starts_with("https://");
        if !http_scheme
            || !http::Uri::try_from(base_url.as_str()).is_ok_and(|u| u.authority().is_some())
        {
            bail!(
                "provider {}: base_url {:?} must be an http(s) URL",
                p.slug,
                p.base_url
            );
        }
        let dialect = match &p.dialect {
            Some(d) => Dialect::parse(d).with_context(|| {
                format!(
                    "provider {}: dialect {d:?} (expected openai, openrouter, deepseek or generic)",
                    p.slug
                )
            })?,
            None => guess_dialect(&p.slug, &base_url),
        };
        let credential = match &p.api_key_env {
            Some(var) => {
                let value = std::env::var(var).ok().filter(|v| !v.is_empty());
                if value.is_none() {
                    tracing::warn!(provider = %p.slug, "environment variable {var} is not set; requests go out without a key");
                }
                Credential::Env {
                    var: var.clone(),
                    value,
                }
            }
            None => Credential::None,
        };
        let mut headers = Vec::new();
        for (k, v) in &p.headers {
            headers.push((
                HeaderName::try_from(k.as_str())
                    .with_context(|| format!("provider {}: header name {k:?}", p.slug))?,
                HeaderValue::try_from(v.as_str())
                    .with_context(|| format!("provider {}: header {k}", p.slug))?,
            ));
        }
        Ok(Provider {
            slug: p.slug.clone(),
            name: p.name.clone().unwrap_or_else(|| p.slug.clone()),
            api,
            base_url,
            credential,
            dialect,
            stream_usage: p.stream_usage.unwrap_or(true),
            headers,
            connect_timeout: Duration::from_secs(p.connect_timeout_secs.unwrap_or(10)),
            timeout: Duration::from_secs(p.timeout_secs.unwrap_or(300)),
            idle_timeout: Duration::from_secs(p.idle_timeout_secs.unwrap_or(120)),
            http2_prior_knowledge: p.http2_prior_knowledge,
            simulated: p.simulated,
            collects_data: match p.data_collection.as_deref() {
                None | Some("allow") => true,
                Some("deny") => false,
                Some(other) => bail!(
                    "provider {}: data_collection {other:?} (expected allow or deny)",
                    p.slug
                ),
            },
            zdr: p.zdr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(base_url: &str) -> anyhow::Result<Provider> {
        let section: ProviderSection = toml::from_str(&format!(
            "slug = \"p\"\napi = \"openai\"\nbase_url = {base_url:?}"
        ))
        .unwrap();
        Provider::from_config(&section)
    }

    #[test]
    fn base_urls_are_checked_at_start() {
        let p = with_url("http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!(p.base_url, "http://127.0.0.1:8080/v1");
        with_url("https://api.deepseek.com").unwrap();
        for bad in [
            "ftp://example.com",
            "https://exa mple.com/v1",
            "https://",
            "http://[::1/v1",
        ] {
            let err = with_url(bad).unwrap_err().to_string();
            assert!(err.contains("base_url"), "{bad}: {err}");
        }
    }
}
