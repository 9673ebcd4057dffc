//! Endpoints (a model served by a provider) and their prices.

use std::sync::Arc;

use anyhow::Context;
use llmux_protocol::canonical::Usage;

use super::model::Model;
use super::provider::Provider;
use crate::config::EndpointSection;
use crate::money::{Money, Price};

/// Prices in picodollars per token (`request` per request, `image` per input image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pricing {
    pub prompt: Price,
    pub completion: Price,
    /// Cache reads; absent means charged as prompt tokens.
    pub input_cache_read: Option<Price>,
    /// Cache writes; absent means charged as prompt tokens.
    pub input_cache_write: Option<Price>,
    /// Reasoning tokens; absent means charged as completion tokens.
    pub internal_reasoning: Option<Price>,
    pub request: Price,
    pub image: Price,
    /// The catalog lists this model's price as variable (router pseudo-models).
    pub variable: bool,
}

impl Pricing {
    /// The exact cost of a generation: each token type at its own price.
    ///
    /// `prompt_tokens` includes cached and cache-written tokens, `completion_tokens` includes
    /// reasoning tokens (OpenAI's convention, which every adapter normalizes to).
    pub fn cost(&self, u: &Usage, images: u64) -> Money {
        let cached = u.cached_tokens.min(u.prompt_tokens);
        let written = u.cache_write_tokens.min(u.prompt_tokens - cached);
        let plain_prompt = u.prompt_tokens - cached - written;
        let reasoning = u.reasoning_tokens.min(u.completion_tokens);
        let (plain_completion, reasoning_price) = match self.internal_reasoning {
            Some(p) => (u.completion_tokens - reasoning, Some(p)),
            None => (u.completion_tokens, None),
        };
        let parts = [
            self.prompt.times(plain_prompt),
            self.input_cache_read.unwrap_or(self.prompt).times(cached),
            self.input_cache_write.unwrap_or(self.prompt).times(written),
            self.completion.times(plain_completion),
            reasoning_price.map_or(Money::ZERO, |p| p.times(reasoning)),
            self.image.times(images),
            self.request.times(1),
        ];
        parts.iter().fold(Money::ZERO, |a, b| a.saturating_add(*b))
    }

    /// Whether every price is zero (a free endpoint).
    pub fn is_free(&self) -> bool {
        self.prompt.is_zero()
            && self.completion.is_zero()
            && self.request.is_zero()
            && !self.variable
    }
}

/// A model served by one provider.
#[derive(Debug)]
pub struct Endpoint {
    pub model_id: String,
    pub model_name: String,
    pub provider: Arc<Provider>,
    /// The provider's own name for the model.
    pub upstream_model: String,
    pub pricing: Pricing,
    pub context_length: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    pub quantization: Option<String>,
    pub supported_parameters: Vec<String>,
    /// The upstream requests' URL and fixed headers, made by the adapter on first use.
    pub request_heads: crate::providers::RequestHeads,
}

impl Endpoint {
    pub(super) fn from_config(
        e: &EndpointSection,
        model: &Model,
        provider: Arc<Provider>,
    ) -> anyhow::Result<Endpoint> {
        let ctx = || format!("endpoint {} at {}", e.model, e.provider);
        let per_m = |s: &Option<String>| -> anyhow::Result<Option<Price>> {
            s.as_deref()
                .map(Price::per_million_usd)
                .transpose()
                .with_context(ctx)
        };
        let per_unit = |s: &Option<String>| -> anyhow::Result<Option<Price>> {
            s.as_deref()
                .map(Price::per_unit_usd)
                .transpose()
                .with_context(ctx)
        };
        let p = &e.pricing;
        let pricing = Pricing {
            prompt: per_m(&p.prompt)?.unwrap_or_default(),
            completion: per_m(&p.completion)?.unwrap_or_default(),
            input_cache_read: per_m(&p.input_cache_read)?,
            input_cache_write: per_m(&p.input_cache_write)?,
            internal_reasoning: per_m(&p.internal_reasoning)?,
            request: per_unit(&p.request)?.unwrap_or_default(),
            image: per_unit(&p.image)?.unwrap_or_default(),
            variable: false,
        };
        Ok(Endpoint {
            model_id: model.id.clone(),
            model_name: model.name.clone(),
            provider,
            upstream_model: e.upstream_model.clone(),
            pricing,
            context_length: e.context_length.or(model.context_length),
            max_completion_tokens: e.max_completion_tokens,
            max_prompt_tokens: e.max_prompt_tokens,
            quantization: e.quantization.clone(),
            supported_parameters: e
                .supported_parameters
                .clone()
                .unwrap_or_else(|| model.supported_parameters.clone()),
            request_heads: Default::default(),
        })
    }

    /// `Provider | model id`, OpenRouter's endpoint name.
    pub fn display_name(&self) -> String {
        format!("{} | {}", self.provider.name, self.model_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_prices_each_token_type() {
        let m = |s: &str| Price::per_million_usd(s).unwrap();
        let p = Pricing {
            prompt: m("0.28"),
            completion: m("0.42"),
            input_cache_read: Some(m("0.028")),
            ..Default::default()
        };
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 500,
            cached_tokens: 400,
            ..Default::default()
        };
        // 600 × 0.28/M + 400 × 0.028/M + 500 × 0.42/M
        assert_eq!(p.cost(&u, 0).to_string(), "0.0003892");
        let with_reasoning = Pricing {
            internal_reasoning: Some(m("1")),
            ..p.clone()
        };
        let u2 = Usage {
            reasoning_tokens: 100,
            ..u.clone()
        };
        // 600 × 0.28/M + 400 × 0.028/M + 400 completion × 0.42/M + 100 reasoning × 1/M
        assert_eq!(with_reasoning.cost(&u2, 0).to_string(), "0.0004472");
    }
}
