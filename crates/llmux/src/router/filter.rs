//! Which endpoints may serve a request: the `provider` preferences, the variants, and what the
//! request needs (context, output length, tools, JSON output, images, parameters). Every
//! endpoint left out has a reason, shown in 404s and in routing metadata.

use llmux_protocol::canonical::{ChatRequest, ResponseFormat};

use super::model::Variants;
use super::preferences::Preferences;
use crate::catalog::{Endpoint, Model};

/// What a request needs from an endpoint.
pub struct Needs {
    /// A rough prompt size (four bytes a token), for the context check.
    pub prompt_tokens: u64,
    pub max_tokens: Option<u64>,
    pub tools: bool,
    pub response_format: bool,
    pub images: bool,
    /// The request's parameters, by OpenRouter's names (for `require_parameters`).
    pub params: Vec<&'static str>,
}

impl Needs {
    pub fn of(req: &ChatRequest) -> Needs {
        let s = &req.sampling;
        let mut params = Vec::new();
        let mut add = |on: bool, name: &'static str| {
            if on {
                params.push(name);
            }
        };
        add(s.temperature.is_some(), "temperature");
        add(s.top_p.is_some(), "top_p");
        add(s.top_k.is_some(), "top_k");
        add(s.frequency_penalty.is_some(), "frequency_penalty");
        add(s.presence_penalty.is_some(), "presence_penalty");
        add(s.repetition_penalty.is_some(), "repetition_penalty");
        add(s.min_p.is_some(), "min_p");
        add(s.top_a.is_some(), "top_a");
        add(s.seed.is_some(), "seed");
        add(req.max_tokens.is_some(), "max_tokens");
        add(!req.stop.is_empty(), "stop");
        add(!req.tools.is_empty(), "tools");
        add(req.tool_choice.is_some(), "tool_choice");
        add(req.response_format.is_some(), "response_format");
        add(
            matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })),
            "structured_outputs",
        );
        add(req.reasoning.is_some(), "reasoning");
        add(req.extra.contains_key("logprobs"), "logprobs");
        add(req.extra.contains_key("logit_bias"), "logit_bias");
        Needs {
            prompt_tokens: req.text_len() as u64 / 4 + 8 * req.messages.len() as u64,
            max_tokens: req.max_tokens.map(u64::from),
            tools: !req.tools.is_empty(),
            response_format: matches!(
                req.response_format,
                Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
            ),
            images: req.has_images(),
            params,
        }
    }
}

fn matches_provider(list: &[String], e: &Endpoint) -> bool {
    let slug = e.provider.slug.to_ascii_lowercase();
    let name = e.provider.name.to_ascii_lowercase();
    list.iter().any(|x| *x == slug || *x == name)
}

/// None if `e` may serve; else why not.
pub fn exclusion(
    e: &Endpoint,
    model: &Model,
    prefs: &Preferences,
    needs: &Needs,
    v: Variants,
) -> Option<String> {
    let slug = &e.provider.slug;
    let p = &e.pricing;
    if !prefs.only.is_empty() && !matches_provider(&prefs.only, e) {
        return Some(format!("{slug} is not in provider.only"));
    }
    if matches_provider(&prefs.ignore, e) {
        return Some(format!("{slug} is in provider.ignore"));
    }
    if !prefs.allow_fallbacks && !prefs.order.is_empty() && !matches_provider(&prefs.order, e) {
        return Some(format!(
            "{slug} is not in provider.order and fallbacks are off"
        ));
    }
    if !prefs.quantizations.is_empty() {
        let q = e
            .quantization
            .as_deref()
            .unwrap_or("unknown")
            .to_ascii_lowercase();
        if !prefs.quantizations.contains(&q) {
            return Some(format!(
                "{slug} serves quantization {q}, not one of provider.quantizations"
            ));
        }
    }
    if prefs.deny_data_collection && e.provider.collects_data {
        return Some(format!(
            "{slug} may store or train on prompts (provider.data_collection = deny)"
        ));
    }
    if prefs.zdr && !e.provider.zdr {
        return Some(format!("{slug} does not retain zero data (provider.zdr)"));
    }
    let mp = &prefs.max_price;
    for (name, price, max) in [
        ("prompt", Some(p.prompt), mp.prompt),
        ("completion", Some(p.completion), mp.completion),
        ("request", Some(p.request), mp.request),
        ("image", Some(p.image), mp.image),
    ] {
        if let (Some(price), Some(max)) = (price, max)
            && price > max
        {
            return Some(format!(
                "{slug}'s {name} price is above provider.max_price.{name}"
            ));
        }
    }
    if v.free && !p.is_free() {
        return Some(format!("{slug} is not free (:free)"));
    }
    if let Some(ctx) = e.context_length.filter(|c| *c > 0) {
        let wanted = needs.prompt_tokens + needs.max_tokens.unwrap_or(0);
        if wanted > ctx {
            return Some(format!(
                "{slug}'s context of {ctx} tokens is too small for about {} prompt tokens{}",
                needs.prompt_tokens,
                needs
                    .max_tokens
                    .map(|m| format!(" and max_tokens {m}"))
                    .unwrap_or_default()
            ));
        }
    }
    if let (Some(max), Some(wanted)) = (e.max_completion_tokens, needs.max_tokens)
        && wanted > max
    {
        return Some(format!(
            "{slug} produces at most {max} tokens; max_tokens is {wanted}"
        ));
    }
    if let Some(max) = e.max_prompt_tokens
        && needs.prompt_tokens > max
    {
        return Some(format!("{slug} accepts at most {max} prompt tokens"));
    }
    let supports = |param: &str| {
        e.supported_parameters.is_empty() || e.supported_parameters.iter().any(|s| s == param)
    };
    if needs.tools && !supports("tools") {
        return Some(format!("{slug} does not support tools"));
    }
    if needs.response_format && !supports("response_format") && !supports("structured_outputs") {
        return Some(format!("{slug} does not support response_format"));
    }
    if needs.images && !model.accepts_images() {
        return Some(format!("{} does not accept images", model.id));
    }
    if prefs.require_parameters
        && let Some(missing) = needs.params.iter().find(|p| !supports(p))
    {
        return Some(format!(
            "{slug} does not support {missing} (provider.require_parameters)"
        ));
    }
    None
}
