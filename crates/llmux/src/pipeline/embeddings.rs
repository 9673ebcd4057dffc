//! Embeddings: route, reserve, try OpenAI-compatible endpoints in order, meter and bill per
//! input token. The upstream's vectors are passed through untouched.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use llmux_protocol::canonical::Usage;
use serde_json::Value;

use super::attempt::{self, Answering, Unfinished};
use super::{RequestMeta, base_record, new_generation_id, with_generation_id};
use crate::billing::KeyContext;
use crate::catalog::Api;
use crate::inbound::embeddings::EmbeddingsRequest;
use crate::metering::{Charge, GenerationRecord, estimate};
use crate::money::Money;
use crate::pipeline::Gateway;
use crate::providers::{
    OpenAiAdapter, Upstream, UpstreamError, UpstreamErrorKind, embeddings_request,
};
use crate::server::error::ApiError;

/// An embeddings request being answered: what [`Unfinished`] records it from.
struct Embedding {
    gw: Arc<Gateway>,
    rec: GenerationRecord,
    received: Instant,
}

impl Answering for Embedding {
    fn record_mut(&mut self) -> &mut GenerationRecord {
        &mut self.rec
    }
    fn gw(&self) -> &Gateway {
        &self.gw
    }
    fn received(&self) -> Instant {
        self.received
    }
}

pub async fn execute(
    gw: Arc<Gateway>,
    key: Arc<KeyContext>,
    req: EmbeddingsRequest,
    meta: RequestMeta,
) -> Response {
    let id = new_generation_id();
    let mut rec = base_record(&id, &key, &meta, "embeddings", &req.model);
    rec.external_user = req
        .body
        .get("user")
        .and_then(Value::as_str)
        .map(str::to_string);
    // From here on the request is recorded once, however it ends: a client that leaves
    // while the upstream computes drops this, and it records the request as cancelled.
    let mut run = Unfinished::new(Box::new(Embedding {
        gw: gw.clone(),
        rec,
        received: meta.received,
    }));
    let fail = |run: &mut Unfinished<Embedding>, err: ApiError| {
        run.fail(&err);
        with_generation_id(err.into_response(), &id)
    };
    if !gw.meter.accepting() {
        return fail(
            &mut run,
            ApiError::unavailable("llmux is saturated (metering backlog); retry shortly"),
        );
    }
    let Some(model) = crate::router::resolve_model(&gw.catalog, &req.model).cloned() else {
        return fail(
            &mut run,
            ApiError::bad_request(format!("{} is not a valid model ID", req.model)),
        );
    };
    let endpoints: Vec<_> = gw
        .catalog
        .endpoints(&model.id)
        .iter()
        .filter(|e| e.provider.api == Api::OpenAi)
        .cloned()
        .collect();
    if endpoints.is_empty() {
        return fail(
            &mut run,
            ApiError::not_found(format!("No embeddings endpoints found for {}.", model.id)),
        );
    }
    let candidates = crate::router::with_byok(endpoints, &key.account.byok());
    let fee = gw.config.billing.byok_fee;
    let include_byok = key.key.include_byok_in_limit;
    let bound: u64 = req.texts.iter().map(|t| t.len() as u64).sum::<u64>() + 16 * req.items as u64;
    let (credits, limit) = candidates
        .iter()
        .map(|c| {
            let p = &c.endpoint.pricing;
            let price = p.prompt.times(bound).saturating_add(p.request.times(1));
            match c.byok {
                None => (price, price),
                Some(_) => (
                    fee.on(price),
                    fee.on(price)
                        .saturating_add(if include_byok { price } else { Money::ZERO }),
                ),
            }
        })
        .fold((Money::ZERO, Money::ZERO), |(a, b), (c, l)| {
            (a.max(c), b.max(l))
        });
    let reservation = match super::reserve(&gw, &key, credits, limit, false).await {
        Ok(r) => r,
        Err(err) => return fail(&mut run, err),
    };

    let mut last = None;
    for c in &candidates {
        let e = &c.endpoint;
        let started = Instant::now();
        let mut body = req.body.clone();
        body.insert("model".into(), e.upstream_model.clone().into());
        let call = async {
            let up = embeddings_request(
                e,
                c.byok.as_ref().map(|k| k.secret()),
                serde_json::to_vec(&body).unwrap_or_default(),
            )
            .map_err(|err| {
                UpstreamError::new(UpstreamErrorKind::InvalidResponse, err.to_string())
            })?;
            let resp = gw.upstream.send(&e.provider, &OpenAiAdapter, up).await?;
            let bytes = Upstream::read_body(resp).await?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|err| {
                UpstreamError::new(
                    UpstreamErrorKind::InvalidResponse,
                    format!("invalid JSON: {err}"),
                )
            })?;
            if !v.get("data").is_some_and(Value::is_array) {
                return Err(UpstreamError::new(
                    UpstreamErrorKind::InvalidResponse,
                    "the answer has no data array",
                ));
            }
            Ok(v)
        };
        let outcome = run.call(e, started, call).await;
        let rec = &mut run.job.rec;
        match outcome {
            Ok(mut v) => {
                attempt::note(rec, e, started, None);
                let reported = v.pointer("/usage/prompt_tokens").and_then(Value::as_u64);
                let estimated = reported.is_none();
                let prompt_tokens =
                    reported.unwrap_or_else(|| req.texts.iter().map(|t| estimate::count(t)).sum());
                let usage = Usage {
                    prompt_tokens,
                    ..Default::default()
                };
                let price = e.pricing.cost(&usage, 0);
                let (cost, byok_usage) = match c.byok {
                    Some(_) => (fee.on(price), price),
                    None => (price, Money::ZERO),
                };
                let toward_limit = if include_byok {
                    cost.saturating_add(byok_usage)
                } else {
                    cost
                };
                reservation.settle(cost, toward_limit, prompt_tokens);
                rec.is_byok = c.byok.is_some();
                rec.byok_usage = byok_usage;
                rec.model = Some(model.id.clone());
                rec.provider = Some(e.provider.slug.clone());
                rec.provider_name = Some(e.provider.name.clone());
                rec.upstream_model = Some(e.upstream_model.clone());
                rec.usage = usage;
                rec.usage_estimated = estimated;
                rec.cost = cost;
                rec.status = 200;
                rec.latency_ms = Some(meta.received.elapsed().as_millis() as i64);
                if cost != Money::ZERO {
                    rec.charge = Some(Charge {
                        account_id: key.account.id.clone(),
                        key_hash: key.key.hash.clone(),
                        amount: cost,
                    });
                }
                run.record();
                v["id"] = id.clone().into();
                v["model"] = model.id.clone().into();
                v["provider"] = e.provider.name.clone().into();
                v["usage"] = serde_json::json!({"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens});
                if let Ok(n) = serde_json::from_str::<Value>(&cost.to_string()) {
                    v["usage"]["cost"] = n;
                }
                v["usage"]["is_byok"] = c.byok.is_some().into();
                let mut r = axum::Json(v).into_response();
                if let Ok(h) = HeaderValue::from_str(&id) {
                    r.headers_mut().insert("x-generation-id", h);
                }
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return r;
            }
            Err(f) => {
                attempt::note(rec, e, started, Some(&f));
                let retry = f.retryable();
                last = Some(f);
                if !retry {
                    break;
                }
            }
        }
    }
    drop(reservation);
    let err = attempt::final_error(last, &run.job.rec);
    fail(&mut run, err)
}
