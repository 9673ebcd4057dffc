//! Usage, cost and reservations: what a generation is charged, and what is held before it
//! starts.

use llmux_protocol::canonical::{ChatRequest, FinishReason, Part, ResponseBuilder, Usage};

use crate::billing::byok::Fee;
use crate::catalog::Endpoint;
use crate::metering::estimate;
use crate::money::Money;
use crate::router::RoutePlan;

/// Completion tokens assumed for the worst case when neither the request nor the endpoint
/// bounds them.
const DEFAULT_MAX_COMPLETION: u64 = 32_768;
/// Prompt tokens an image may cost (providers bill images as tokens).
const IMAGE_TOKENS_BOUND: u64 = 3_000;

pub fn image_count(req: &ChatRequest) -> u64 {
    req.messages
        .iter()
        .map(|m| {
            m.content
                .iter()
                .filter(|p| matches!(p, Part::Image { .. }))
                .count() as u64
        })
        .sum()
}

/// An upper bound of the prompt's tokens without running a tokenizer: BPE tokens are at least
/// one byte each, plus per-message framing and images.
pub fn prompt_tokens_bound(req: &ChatRequest) -> u64 {
    req.text_len() as u64
        + req.messages.len() as u64 * (estimate::PER_MESSAGE + 4)
        + image_count(req) * IMAGE_TOKENS_BOUND
        + 16
}

/// The most this request can cost at `e`.
pub fn worst_case_at(req: &ChatRequest, e: &Endpoint, prompt_bound: u64) -> Money {
    let completion = req
        .max_tokens
        .map(u64::from)
        .or(e.max_completion_tokens)
        .or_else(|| {
            e.context_length
                .map(|c| c.saturating_sub(prompt_bound.min(c)))
        })
        .unwrap_or(DEFAULT_MAX_COMPLETION)
        .min(e.context_length.unwrap_or(u64::MAX));
    let p = &e.pricing;
    // The highest of the prompt prices applies to every prompt token, and the highest
    // completion price to every completion token.
    let prompt_price = [Some(p.prompt), p.input_cache_read, p.input_cache_write]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default();
    let completion_price = p.completion.max(p.internal_reasoning.unwrap_or_default());
    prompt_price
        .times(prompt_bound)
        .saturating_add(completion_price.times(completion))
        .saturating_add(p.image.times(image_count(req)))
        .saturating_add(p.request.times(1))
}

/// The most this request can take from the balance, and the most it can count toward the
/// key's limit, at any candidate it may be routed to (through the account's own key, only
/// the fee is charged; the provider's price counts toward the limit with
/// `include_byok_in_limit`).
pub fn worst_case(
    req: &ChatRequest,
    plan: &RoutePlan,
    fee: Fee,
    include_byok: bool,
) -> (Money, Money) {
    let bound = prompt_tokens_bound(req);
    plan.attempts()
        .map(|(_, c)| {
            let price = worst_case_at(req, &c.endpoint, bound);
            match c.byok {
                None => (price, price),
                Some(_) => {
                    let f = fee.on(price);
                    (
                        f,
                        if include_byok {
                            f.saturating_add(price)
                        } else {
                            f
                        },
                    )
                }
            }
        })
        .fold((Money::ZERO, Money::ZERO), |(a, b), (c, l)| {
            (a.max(c), b.max(l))
        })
}

/// Prompt tokens counted with the tokenizer (for upstreams that report no usage).
pub fn estimate_prompt_tokens(req: &ChatRequest) -> u64 {
    let mut n = 3;
    for m in &req.messages {
        n += estimate::PER_MESSAGE;
        for p in &m.content {
            if let Part::Text { text, .. } = p {
                n += estimate::count(text);
            }
        }
        for c in &m.tool_calls {
            n += estimate::count(&c.name) + estimate::count(&c.arguments);
        }
    }
    for t in &req.tools {
        n += estimate::count(&t.name);
        if let Some(d) = &t.description {
            n += estimate::count(d);
        }
        if let Some(p) = &t.parameters {
            n += estimate::count(&p.to_string());
        }
    }
    n
}

/// The usage to bill: the upstream's report, else a tokenizer count of what was sent and
/// produced (`estimated = true`).
pub fn final_usage(req: &ChatRequest, built: &ResponseBuilder) -> (Usage, bool) {
    match built.usage() {
        Some(u) => (u.clone(), false),
        None => (
            Usage {
                prompt_tokens: estimate_prompt_tokens(req),
                completion_tokens: estimate::count(&built.output_text()),
                ..Default::default()
            },
            true,
        ),
    }
}

/// OpenRouter's zero-completion insurance: nothing is charged for a generation that produced
/// no output tokens and ended without a proper finish reason (blank or error).
pub fn charge_for(cost: Money, usage: &Usage, finish: Option<FinishReason>) -> Money {
    let insured =
        usage.completion_tokens == 0 && matches!(finish, None | Some(FinishReason::Error));
    if insured { Money::ZERO } else { cost }
}
