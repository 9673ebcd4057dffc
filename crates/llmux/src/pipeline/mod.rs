//! The request pipeline, in named phases. Each inference request goes through:
//!
//! 1. **authenticate**: the key, from memory ([`crate::server::auth`]);
//! 2. **parse**: the inbound protocol's body into the canonical request ([`crate::inbound`]);
//! 3. **admit**: refuse (503) while the metering queue is over its bound;
//! 4. **route**: the models and endpoints to try, in order ([`crate::router`]);
//! 5. **reserve**: the worst-case cost held against the account ([`crate::billing`]);
//! 6. **attempt**: each endpoint in turn, falling back on retryable failures
//!    ([`complete`] for whole answers, [`stream`] for streams, which fall back only before
//!    any content reached the client);
//! 7. **meter**: one generation record, with the settled charge ([`accounting`]).
//!
//! A client that disconnects cannot cut the metering short. A stream's phases 6 and 7 run in
//! a task of their own, which notices, stops the upstream and records what was produced; a
//! whole answer's (chat or [`embeddings`]) run in the request's own future, and dropping it
//! records the request as cancelled ([`attempt::Unfinished`]).

pub mod accounting;
mod attempt;
mod complete;
pub mod embeddings;
mod pipe;
mod stream;

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use llmux_protocol::canonical::ChatRequest;
use serde_json::json;
use tokio::sync::oneshot;

use crate::billing::{Billing, KeyContext, RateUnit, Reservation, ReserveError};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::inbound::Format;
use crate::metering::{GenerationRecord, Meter};
use crate::money::Money;
use crate::providers::Upstream;
use crate::router;
use crate::server::error::ApiError;
use crate::storage::Store;

/// Everything the pipeline shares across requests.
pub struct Gateway {
    pub config: Config,
    pub catalog: Arc<Catalog>,
    pub billing: Arc<Billing>,
    pub meter: Meter,
    pub upstream: Upstream,
    pub router: crate::router::Router,
    pub store: Store,
    /// The cluster's Redis, when several nodes share one database.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Recent answers of the public rankings endpoints and pages.
    pub rankings_cache: crate::rankings::cache::Cache,
    /// Every stream's driving task (phases 6 and 7), so a shutdown can wait for their
    /// records: a stream whose client left is still metering after its connection closed.
    pub requests: tokio_util::task::TaskTracker,
    /// Cancelled when a shutdown's grace period is over: streams still open end then, billed
    /// for what they produced, and whole answers still awaited get a 503, rather than being
    /// dropped with their thread.
    pub shutdown: Shutdown,
}

/// The end of a shutdown's grace period, as one token per serving thread, all children of
/// one: waiting on a token takes its lock at every poll, and a stream waits on its own
/// thread's, which no other thread locks.
pub struct Shutdown {
    all: tokio_util::sync::CancellationToken,
    by_thread: Vec<tokio_util::sync::CancellationToken>,
}

impl Shutdown {
    /// For `threads` serving threads (and one token for any other thread).
    pub fn new(threads: usize) -> Self {
        let all = tokio_util::sync::CancellationToken::new();
        let by_thread = (0..=threads).map(|_| all.child_token()).collect();
        Shutdown { all, by_thread }
    }

    /// End the grace period: every stream still open ends.
    pub fn cancel(&self) {
        self.all.cancel();
    }

    /// This thread's token ([`crate::server::workers::current`]).
    pub fn token(&self) -> &tokio_util::sync::CancellationToken {
        &self.by_thread[crate::server::workers::current().min(self.by_thread.len() - 1)]
    }
}

/// Facts about the HTTP request that end up in the record.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub received: Instant,
    pub received_ms: i64,
    pub app_referer: Option<String>,
    pub app_title: Option<String>,
    pub user_agent: Option<String>,
    pub session_id: Option<String>,
    /// The client's `anthropic-beta` header, passed to Anthropic upstreams.
    pub anthropic_beta: Option<String>,
    /// `X-OpenRouter-Metadata: enabled` (or `X-Llmux-Metadata`): show the routing decision.
    pub want_metadata: bool,
}

/// A header's value as text, at most 512 characters of it.
fn header_string(v: Option<&HeaderValue>) -> Option<String> {
    let s = v?.to_str().ok()?;
    if s.is_empty() {
        return None;
    }
    // Visible ASCII (`to_str`'s condition): a character is a byte.
    Some(s[..s.len().min(512)].to_string())
}

/// The headers a request's metadata comes from, in the order of [`RequestMeta::from_headers`]'s
/// slots.
const META_HEADERS: [&str; 9] = [
    "http-referer",
    "referer",
    "x-openrouter-title",
    "x-title",
    "user-agent",
    "x-session-id",
    "anthropic-beta",
    "x-openrouter-metadata",
    "x-llmux-metadata",
];

impl RequestMeta {
    /// Read in one pass over the request's headers (a handful), each name matched against
    /// the nine above: nine lookups hashed each name, 1,600 instructions a request. As with
    /// `HeaderMap::get`, a name's first value counts.
    pub fn from_headers(h: &HeaderMap) -> Self {
        let mut first: [Option<&HeaderValue>; META_HEADERS.len()] = [None; META_HEADERS.len()];
        for (name, value) in h {
            if let Some(i) = META_HEADERS.iter().position(|m| *m == name.as_str()) {
                first[i].get_or_insert(value);
            }
        }
        let [
            http_referer,
            referer,
            openrouter_title,
            title,
            user_agent,
            session_id,
            anthropic_beta,
            openrouter_metadata,
            llmux_metadata,
        ] = first;
        Self {
            received: Instant::now(),
            received_ms: crate::clock::now_ms(),
            app_referer: header_string(http_referer).or_else(|| header_string(referer)),
            app_title: header_string(openrouter_title).or_else(|| header_string(title)),
            user_agent: header_string(user_agent),
            session_id: header_string(session_id),
            anthropic_beta: header_string(anthropic_beta),
            want_metadata: [openrouter_metadata, llmux_metadata]
                .into_iter()
                .any(|v| header_string(v).is_some_and(|v| v.eq_ignore_ascii_case("enabled"))),
        }
    }
}

/// A new generation id, OpenRouter style: `gen-<unix seconds>-<20 alphanumerics>`. The first
/// four of the twenty are the microsecond within that second in base 36 (digits, then
/// lowercase letters: the same order in every collation), the other sixteen random (95 bits).
/// So ids sort by creation, and the database's index on them takes a batch's records at its
/// end. With wholly random characters a batch's ids were scattered over the pages of the
/// second's range, each page written again at every batch: at 27,000 requests/s, 0.61 of
/// SQLite's 16 KiB writes per record, 0.33 with ordered ids (`strace -f`).
pub fn new_generation_id() -> String {
    use std::fmt::Write;

    use rand::Rng;
    use rand::distr::Alphanumeric;
    const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let now = crate::clock::now_us();
    let mut id = String::with_capacity(40);
    let _ = write!(id, "gen-{}-", now.div_euclid(1_000_000));
    let micros = now.rem_euclid(1_000_000) as usize;
    for place in [36 * 36 * 36, 36 * 36, 36, 1] {
        id.push(char::from(BASE36[micros / place % 36]));
    }
    id.extend(
        rand::rng()
            .sample_iter(&Alphanumeric)
            .take(16)
            .map(char::from),
    );
    id
}

/// The record every request starts from.
fn base_record(
    id: &str,
    key: &KeyContext,
    meta: &RequestMeta,
    api_type: &str,
    requested_model: &str,
) -> GenerationRecord {
    GenerationRecord {
        id: id.to_string(),
        created_at_ms: meta.received_ms,
        account_id: Some(key.account.id.clone()),
        key_hash: Some(key.key.hash.clone()),
        api_type: api_type.to_string(),
        requested_model: requested_model.to_string(),
        app_referer: meta.app_referer.clone(),
        app_title: meta.app_title.clone(),
        user_agent: meta.user_agent.clone(),
        session_id: meta.session_id.clone(),
        ..Default::default()
    }
}

fn finish_error_record(
    gw: &Gateway,
    mut rec: GenerationRecord,
    meta: &RequestMeta,
    err: &ApiError,
) {
    rec.status = err.status.as_u16();
    rec.error = Some(err.message.clone());
    rec.latency_ms = Some(meta.received.elapsed().as_millis() as i64);
    gw.meter.record(rec);
}

/// A request refused before routing (unreadable body, invalid JSON): it is still recorded.
pub fn reject(
    gw: &Gateway,
    key: &KeyContext,
    meta: &RequestMeta,
    api_type: &str,
    requested_model: Option<String>,
    err: ApiError,
) -> ApiError {
    let id = new_generation_id();
    let rec = base_record(
        &id,
        key,
        meta,
        api_type,
        requested_model.as_deref().unwrap_or(""),
    );
    finish_error_record(gw, rec, meta, &err);
    err
}

/// Hold the worst case of a request (see [`crate::billing::Billing::reserve`]), turning a
/// refusal into the client's error. Before refusing for lack of credits, changes made
/// elsewhere are picked up, so a top-up is usable at once. A key's first free-model request
/// on this node first counts the day's earlier ones, from the records.
pub async fn reserve(
    gw: &Gateway,
    key: &Arc<KeyContext>,
    credits: Money,
    limit: Money,
    free: bool,
) -> Result<Reservation, ApiError> {
    if free && gw.cluster.is_none() {
        gw.billing.count_free_today(key).await;
    }
    let attempt = || async {
        match &gw.cluster {
            // Several nodes: the cluster decides, for all of them at once. In a task of its
            // own, so that it ends even if the client leaves meanwhile: Redis takes the hold
            // whether or not its answer is awaited, and a hold taken for a request that is
            // gone would stay until this node stopped. The task drops such a reservation,
            // which gives the hold back.
            Some(cluster) => {
                let (billing, cluster, key) = (gw.billing.clone(), cluster.clone(), key.clone());
                tokio::spawn(async move {
                    billing
                        .reserve_shared(&cluster, &key, credits, limit, free)
                        .await
                })
                .await
                .unwrap_or(Err(ReserveError::Unavailable))
            }
            None => gw.billing.reserve(key, credits, limit, free),
        }
    };
    let mut result = attempt().await;
    if matches!(result, Err(ReserveError::InsufficientCredits { .. })) {
        // A top-up not seen yet: reading the ledger brings it here (and to the cluster).
        gw.billing.sync_if_stale().await;
        result = attempt().await;
    }
    result.map_err(|e| match e {
        ReserveError::Unavailable => ApiError::unavailable(
            "Billing is temporarily unavailable (the cluster's Redis cannot be reached); retry shortly",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        ReserveError::InsufficientCredits { available, needed } => ApiError::payment_required(format!(
            "Insufficient credits. This request requires up to ${needed} (prompt and max_tokens at the chosen \
             endpoint's price) but ${available} is available. Add credits or lower max_tokens."
        ))
        .with_metadata(json!({"available": available.to_string(), "required": needed.to_string()})),
        ReserveError::KeyLimitExceeded { limit, remaining } => ApiError::forbidden(format!(
            "Key limit exceeded: this key may spend ${limit} per its limit window and ${remaining} remains"
        ))
        .with_metadata(json!({"limit": limit.to_string(), "remaining": remaining.to_string()})),
        ReserveError::RateLimited { unit, limit, reset_ms } => {
            let what = match unit {
                RateUnit::Requests => "requests per minute",
                RateUnit::Tokens => "tokens per minute",
                RateUnit::FreeRequests => "free-model requests per minute",
                RateUnit::FreeRequestsPerDay => "free-model requests per day",
            };
            let wait_ms = (reset_ms - crate::clock::now_ms()).max(0);
            let header = |v: String| HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("0"));
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Rate limit exceeded: {limit} {what} for this key"),
            )
            .with_metadata(json!({"limit": limit, "unit": what, "reset_ms": reset_ms}))
            .with_header(header::RETRY_AFTER, header(((wait_ms + 999) / 1000).max(1).to_string()))
            .with_header(HeaderName::from_static("x-ratelimit-limit"), header(limit.to_string()))
            .with_header(HeaderName::from_static("x-ratelimit-remaining"), HeaderValue::from_static("0"))
            .with_header(HeaderName::from_static("x-ratelimit-reset"), header(reset_ms.to_string()))
        }
    })
}

/// What the driving task hands back to the HTTP handler.
pub(crate) enum Head {
    Complete(Vec<u8>),
    Stream(pipe::PipeBody),
    Error(ApiError),
}

fn with_generation_id(mut r: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert("x-generation-id", v);
    }
    r
}

/// Run phases 3 to 7 for a parsed request and build the HTTP response. Boxed: inline, this
/// future made each inbound handler's 5 KB, which axum copies whole when it boxes a handler.
pub fn execute(
    gw: Arc<Gateway>,
    key: Arc<KeyContext>,
    req: ChatRequest,
    meta: RequestMeta,
    format: Arc<dyn Format>,
) -> futures::future::BoxFuture<'static, Response> {
    Box::pin(run(gw, key, req, meta, format))
}

async fn run(
    gw: Arc<Gateway>,
    key: Arc<KeyContext>,
    mut req: ChatRequest,
    meta: RequestMeta,
    format: Arc<dyn Format>,
) -> Response {
    let id = new_generation_id();
    let mut rec = base_record(&id, &key, &meta, format.api_type(), &req.model);
    rec.streamed = req.stream;
    rec.external_user = req.user.clone();
    if rec.session_id.is_none() {
        rec.session_id = req.session_id.clone();
    }
    let error = |err: ApiError, rec: GenerationRecord| -> Response {
        finish_error_record(&gw, rec, &meta, &err);
        let body = format.error_body(&err);
        with_generation_id(err.into_response_with(body), &id)
    };

    // admit
    if !gw.meter.accepting() {
        return error(
            ApiError::unavailable("llmux is saturated (metering backlog); retry shortly")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            rec,
        );
    }
    // route
    let conversation = router::sticky::conversation_key(&req, meta.session_id.as_deref());
    // The decision's details are shown only to a client that asks (`X-OpenRouter-Metadata`):
    // not made otherwise, nor kept for as long as the request lasts (600 bytes an open stream).
    let plan = match gw.router.plan(
        &gw.catalog,
        &req,
        &key.account.byok(),
        conversation,
        meta.want_metadata,
    ) {
        Ok(p) => p,
        Err(e) => return error(e.into_api_error(), rec),
    };
    if plan.variants.thinking && req.reasoning.is_none() {
        req.reasoning = Some(llmux_protocol::canonical::ReasoningConfig {
            enabled: Some(true),
            ..Default::default()
        });
    }
    // reserve
    let (credits, limit) = accounting::worst_case(
        &req,
        &plan,
        gw.config.billing.byok_fee,
        key.key.include_byok_in_limit,
    );
    let reservation = match reserve(&gw, &key, credits, limit, plan.variants.free).await {
        Ok(r) => r,
        Err(err) => return error(err, rec),
    };

    // attempt + meter. Boxed: an async fn keeps its by-value arguments twice in its state, so
    // a `Job` passed along by value made a stream's task 10 KB, copied at every spawn and kept
    // while it lasts.
    let job = Box::new(Job {
        gw: gw.clone(),
        key,
        req,
        meta: meta.clone(),
        format: format.clone(),
        plan,
        reservation: Some(reservation),
        rec,
    });
    let head = if job.req.stream {
        // A stream outlives this handler (its relay, and its metering after a client that
        // left), so it runs in a task of its own. Spawned boxed, so the task holds a pointer
        // rather than the future: tokio copied a task's future whole at each step of spawning
        // it, and its stage again when it finished and when it was dropped.
        let (head_tx, head_rx) = oneshot::channel();
        gw.requests.spawn(Box::pin(stream::drive(job, head_tx)));
        head_rx.await
    } else {
        // Boxed: inline, its 2.3 KB would be copied with this future into its box.
        Ok(Box::pin(complete::answer(job)).await)
    };
    let response = match head {
        Ok(Head::Complete(body)) => {
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok(Head::Stream(body)) => {
            // Room for exactly its three headers (with the generation id below): a map grown
            // from empty makes room for six, 650 bytes kept while the stream lasts.
            let mut response = Response::new(axum::body::Body::new(body));
            *response.headers_mut() = HeaderMap::with_capacity(3);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Ok(Head::Error(err)) => {
            let body = format.error_body(&err);
            err.into_response_with(body)
        }
        Err(_) => ApiError::internal("the request was dropped").into_response(),
    };
    with_generation_id(response, &id)
}

/// One request's state from routing on, owned by what answers it: a stream's task, or a whole
/// answer's [`complete::answer`].
pub(crate) struct Job {
    pub gw: Arc<Gateway>,
    pub key: Arc<KeyContext>,
    pub req: ChatRequest,
    pub meta: RequestMeta,
    pub format: Arc<dyn Format>,
    pub plan: router::RoutePlan,
    pub reservation: Option<crate::billing::Reservation>,
    pub rec: GenerationRecord,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_kept_to_512_characters() {
        let mut h = HeaderMap::new();
        h.insert("x-title", HeaderValue::from_str(&"t".repeat(600)).unwrap());
        h.insert("x-session-id", HeaderValue::from_static(""));
        h.insert(
            "user-agent",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        h.insert(
            "http-referer",
            HeaderValue::from_static("https://app.example"),
        );
        let meta = RequestMeta::from_headers(&h);
        assert_eq!(meta.app_title.as_deref(), Some("t".repeat(512).as_str()));
        assert_eq!(meta.session_id, None, "empty");
        assert_eq!(meta.user_agent, None, "not visible ASCII");
        assert_eq!(meta.app_referer.as_deref(), Some("https://app.example"));
    }

    #[test]
    fn a_headers_first_value_counts_and_openrouters_names_come_first() {
        let mut h = HeaderMap::new();
        h.insert(
            "referer",
            HeaderValue::from_static("https://fallback.example"),
        );
        h.insert("x-title", HeaderValue::from_static("Old title"));
        h.append("x-session-id", HeaderValue::from_static("first"));
        h.append("x-session-id", HeaderValue::from_static("second"));
        h.insert("x-llmux-metadata", HeaderValue::from_static("Enabled"));
        let meta = RequestMeta::from_headers(&h);
        assert_eq!(
            meta.app_referer.as_deref(),
            Some("https://fallback.example")
        );
        assert_eq!(meta.app_title.as_deref(), Some("Old title"));
        assert_eq!(meta.session_id.as_deref(), Some("first"));
        assert!(meta.want_metadata);

        h.insert(
            "http-referer",
            HeaderValue::from_static("https://app.example"),
        );
        h.insert("x-openrouter-title", HeaderValue::from_static("New title"));
        h.insert("x-llmux-metadata", HeaderValue::from_static("disabled"));
        let meta = RequestMeta::from_headers(&h);
        assert_eq!(meta.app_referer.as_deref(), Some("https://app.example"));
        assert_eq!(meta.app_title.as_deref(), Some("New title"));
        assert!(!meta.want_metadata);
    }

    #[test]
    fn generation_ids_look_like_openrouters() {
        let id = new_generation_id();
        let parts: Vec<&str> = id.splitn(3, '-').collect();
        assert_eq!(parts[0], "gen");
        assert!(parts[1].parse::<i64>().is_ok(), "{id}");
        assert_eq!(parts[2].len(), 20, "{id}");
        assert!(parts[2].chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        assert_ne!(id, new_generation_id());
    }

    #[test]
    fn generation_ids_sort_by_creation() {
        let order = |id: &str| {
            let (secs, rest) = id["gen-".len()..].split_once('-').unwrap();
            (secs.parse::<i64>().unwrap(), rest[..4].to_string())
        };
        let mut last = order(&new_generation_id());
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            let next = order(&new_generation_id());
            assert!(next > last, "{next:?} after {last:?}");
            last = next;
        }
    }
}
