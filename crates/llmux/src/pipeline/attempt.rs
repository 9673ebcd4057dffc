//! What the attempt loops share: building an endpoint's request, recording each attempt, and
//! turning the final failure into the client's error.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, header};
use llmux_protocol::canonical::{Finish, Usage};
use serde_json::json;

use super::{Gateway, Job};
use crate::catalog::{Endpoint, Model};
use crate::metering::{Charge, GenerationRecord, ProviderResponse};
use crate::money::Money;
use crate::providers::{
    Adapter, BuildContext, UpstreamError, UpstreamErrorKind, UpstreamRequest, adapter_for,
};
use crate::router::Candidate;
use crate::router::health::Outcome;
use crate::server::error::ApiError;

/// What a request cut short by a shutdown is told (and its record says).
pub(super) const SHUTTING_DOWN: &str = "llmux is shutting down; retry shortly";

/// Why an endpoint could not serve.
pub(super) enum Failure {
    /// The upstream failed (or was unreachable).
    Upstream {
        provider: String,
        error: UpstreamError,
    },
    /// The request cannot be expressed in this endpoint's protocol.
    Unsupported(String),
    /// llmux is shutting down (its grace period is over) before the endpoint answered.
    Shutdown,
}

impl Failure {
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Upstream { error, .. } => error.is_retryable(),
            // Another provider may speak a protocol that can express the request.
            Failure::Unsupported(_) => true,
            Failure::Shutdown => false,
        }
    }
}

/// What a request being answered keeps its record in: a [`Job`], or an embeddings request's
/// own state.
pub(super) trait Answering {
    fn record_mut(&mut self) -> &mut GenerationRecord;
    /// The gateway: its meter takes the record, its shutdown token (this serving thread's,
    /// cancelled when a shutdown's grace period ends) ends the call.
    fn gw(&self) -> &Gateway;
    fn received(&self) -> Instant;
}

impl Answering for Job {
    fn record_mut(&mut self) -> &mut GenerationRecord {
        &mut self.rec
    }
    fn gw(&self) -> &Gateway {
        &self.gw
    }
    fn received(&self) -> Instant {
        self.meta.received
    }
}

/// A request being answered in its own future, until its record is queued. Dropped before
/// that (the client left, so the future was dropped, and with it the upstream call and the
/// credit hold), it records the request as cancelled, with the attempt that was under way and
/// nothing billed.
pub(super) struct Unfinished<A: Answering> {
    pub job: Box<A>,
    /// The endpoint being called, and since when.
    attempt: Option<(Arc<Endpoint>, Instant)>,
    recorded: bool,
}

impl<A: Answering> Unfinished<A> {
    pub fn new(job: Box<A>) -> Self {
        Self {
            job,
            attempt: None,
            recorded: false,
        }
    }

    /// Call `e` (started then) within its provider's timeout, noted as the attempt under way
    /// meanwhile, so that a client leaving during the call has it in the record. A shutdown's
    /// grace period ending first ends the call with [`Failure::Shutdown`], so the client gets a
    /// 503 and the request a record saying so, rather than being dropped with its thread.
    pub async fn call<T>(
        &mut self,
        e: &Arc<Endpoint>,
        started: Instant,
        call: impl Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, Failure> {
        self.attempt = Some((e.clone(), started));
        let shutdown = self.job.gw().shutdown.token();
        let outcome = tokio::select! {
            biased;
            answer = tokio::time::timeout(e.provider.timeout, call) => answer
                .unwrap_or_else(|_| {
                    Err(UpstreamError::new(
                        UpstreamErrorKind::Timeout,
                        format!("no answer within {}s", e.provider.timeout.as_secs()),
                    ))
                })
                .map_err(|error| Failure::Upstream {
                    provider: e.provider.name.clone(),
                    error,
                }),
            _ = shutdown.cancelled() => Err(Failure::Shutdown),
        };
        self.attempt = None;
        outcome
    }

    /// Queue the record: the request is finished, whatever happens to its future now.
    pub fn record(&mut self) {
        self.recorded = true;
        let rec = std::mem::take(self.job.record_mut());
        self.job.gw().meter.record(rec);
    }

    /// Record the request as failed with the error its client gets.
    pub fn fail(&mut self, err: &ApiError) {
        let received = self.job.received();
        let rec = self.job.record_mut();
        rec.status = err.status.as_u16();
        rec.error = Some(err.message.clone());
        rec.latency_ms = Some(received.elapsed().as_millis() as i64);
        self.record();
    }
}

impl<A: Answering> Drop for Unfinished<A> {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let received = self.job.received();
        let rec = self.job.record_mut();
        rec.cancelled = true;
        rec.status = 499;
        rec.error = Some("client disconnected".into());
        rec.latency_ms = Some(received.elapsed().as_millis() as i64);
        if let Some((e, started)) = &self.attempt {
            note(rec, e, *started, None);
        }
        self.record();
    }
}

/// The adapter and the upstream request for one attempt.
pub(super) fn build(
    job: &Job,
    c: &Candidate,
    stream: bool,
) -> Result<(&'static dyn Adapter, UpstreamRequest), Failure> {
    let e = &c.endpoint;
    let adapter = adapter_for(e.provider.api);
    let ctx = BuildContext {
        endpoint: e,
        stream,
        same_protocol: job.format.same_protocol(e.provider.api),
        anthropic_beta: job.meta.anthropic_beta.as_deref(),
        credential: c.byok.as_ref().map(|k| k.secret()),
    };
    adapter
        .build(&job.req, &ctx)
        .map(|r| (adapter, r))
        .map_err(|err| Failure::Unsupported(err.to_string()))
}

/// Note one attempt in `provider_responses`.
pub(super) fn note(
    rec: &mut GenerationRecord,
    e: &Endpoint,
    started: Instant,
    failure: Option<&Failure>,
) {
    let (status, error) = match failure {
        None => (Some(200), None),
        Some(Failure::Upstream { error, .. }) => (error.status(), Some(error.message.clone())),
        Some(Failure::Unsupported(m)) => (None, Some(m.clone())),
        Some(Failure::Shutdown) => (None, Some(SHUTTING_DOWN.to_string())),
    };
    // Most requests make one attempt: room for one (a Vec's first push makes room for four,
    // 350 bytes kept while a stream lasts).
    if rec.provider_responses.capacity() == 0 {
        rec.provider_responses.reserve_exact(1);
    }
    rec.provider_responses.push(ProviderResponse {
        provider: e.provider.slug.clone(),
        endpoint: e.upstream_model.clone(),
        status,
        latency_ms: started.elapsed().as_millis() as i64,
        error,
    });
}

/// The error the client sees when every attempt failed.
pub(super) fn final_error(last: Option<Failure>, rec: &GenerationRecord) -> ApiError {
    let previous: Vec<_> = rec
        .provider_responses
        .iter()
        .map(|r| json!({"provider": r.provider, "status": r.status, "message": r.error}))
        .collect();
    match last {
        None => ApiError::not_found("No endpoints available"),
        Some(Failure::Unsupported(m)) => ApiError::bad_request(m),
        Some(Failure::Shutdown) => ApiError::unavailable(SHUTTING_DOWN),
        Some(Failure::Upstream { provider, error }) => {
            let status = http::StatusCode::from_u16(error.client_status())
                .unwrap_or(http::StatusCode::BAD_GATEWAY);
            let message = match error.kind {
                crate::providers::UpstreamErrorKind::Timeout => {
                    format!("{provider}: timed out: {}", error.message)
                }
                _ => format!("{provider}: {}", error.message),
            };
            let mut err = ApiError::new(status, message).with_metadata(json!({
                "provider_name": provider,
                "raw": error.message,
                "error_type": error.error_type(),
                "previous_errors": previous,
            }));
            if let Some(ra) = error.retry_after.filter(|_| status.as_u16() == 429)
                && let Ok(v) = HeaderValue::from_str(&ra.as_secs().to_string())
            {
                err = err.with_header(header::RETRY_AFTER, v);
            }
            err
        }
    }
}

/// Fill the record for a generation served by `e`, settle the reservation, and return the
/// amount charged.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle_served(
    job: &mut Job,
    model: &Model,
    c: &Candidate,
    usage: Usage,
    estimated: bool,
    finish: Option<&Finish>,
    upstream_id: Option<String>,
    reservation: crate::billing::Reservation,
) -> Money {
    let e = &c.endpoint;
    let cost = e
        .pricing
        .cost(&usage, super::accounting::image_count(&job.req));
    let billable = super::accounting::charge_for(cost, &usage, finish.map(|f| f.reason));
    // Through the account's own key the provider bills the account; llmux charges its fee.
    let (charged, byok_usage) = match c.byok {
        Some(_) => (job.gw.config.billing.byok_fee.on(billable), billable),
        None => (billable, Money::ZERO),
    };
    let toward_limit = if job.key.key.include_byok_in_limit {
        charged.saturating_add(byok_usage)
    } else {
        charged
    };
    reservation.settle(charged, toward_limit, usage.total());
    let rec = &mut job.rec;
    rec.is_byok = c.byok.is_some();
    rec.byok_usage = byok_usage;
    rec.model = Some(model.id.clone());
    rec.provider = Some(e.provider.slug.clone());
    rec.provider_name = Some(e.provider.name.clone());
    rec.upstream_model = Some(e.upstream_model.clone());
    rec.upstream_id = upstream_id;
    rec.finish_reason = finish.map(|f| f.reason.as_str().to_string());
    rec.native_finish_reason = finish.and_then(|f| f.native.clone());
    rec.upstream_cost = usage.upstream_cost.clone();
    rec.usage = usage;
    rec.usage_estimated = estimated;
    rec.cost = charged;
    if charged != Money::ZERO {
        rec.charge = Some(Charge {
            account_id: job.key.account.id.clone(),
            key_hash: job.key.key.hash.clone(),
            amount: charged,
        });
    }
    charged
}

/// Tell the endpoint's live health how an attempt went. A request the endpoint's protocol
/// cannot express says nothing about the endpoint (but gives back a probe turn).
pub(super) fn report(
    job: &Job,
    model: &Model,
    e: &Endpoint,
    failure: Option<&Failure>,
    ttft_ms: Option<f64>,
    tokens_per_sec: Option<f64>,
) {
    let health = &job.gw.router.health;
    let outcome = match failure {
        None => Outcome {
            success: true,
            rate_limited: false,
            retry_after: None,
            ttft_ms,
            tokens_per_sec,
        },
        Some(Failure::Upstream { error, .. }) => Outcome {
            success: false,
            rate_limited: error.status() == Some(429),
            retry_after: error.retry_after,
            ttft_ms: None,
            tokens_per_sec: None,
        },
        Some(Failure::Unsupported(_) | Failure::Shutdown) => {
            health.of(&e.provider.slug, &model.id).release_probe();
            return;
        }
    };
    health.record(&e.provider.slug, &model.id, outcome);
}

/// The routing decision and the attempts, for `X-OpenRouter-Metadata: enabled`.
pub(super) fn metadata(job: &Job) -> Option<serde_json::Value> {
    if !job.meta.want_metadata {
        return None;
    }
    let d = &job.plan.decision;
    Some(json!({
        "requested": d.requested,
        "strategy": d.strategy,
        "endpoints": d.endpoints,
        "filtered": d.filtered,
        "attempt": job.rec.provider_responses.len(),
        "attempts": job.rec.provider_responses,
    }))
}
