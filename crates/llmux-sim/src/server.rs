//! The simulator's HTTP server: routes, shared state, the control API, and paced delivery.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;

use crate::directives::{Directives, Fault};
use crate::log::{RecordedRequest, RequestLog};
use crate::script::{self, Script, SimRequest};
use crate::{anthropic, embeddings, gemini, openai};

/// Process-wide settings (from `llmux sim` flags).
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    pub defaults: Directives,
    /// When set, requests must carry this key (as a Bearer token, `x-api-key` or
    /// `x-goog-api-key`), else 401.
    pub require_key: Option<String>,
    /// Simulate prompt caching: a repeated conversation prefix is reported as cached tokens.
    pub prompt_cache: bool,
    /// Keep a log of received requests (`GET /_sim/requests`).
    pub record: bool,
}

pub struct SimState {
    pub config: SimConfig,
    control: RwLock<HashMap<Option<String>, Fault>>,
    log: RequestLog,
    cache: Mutex<HashSet<u64>>,
    seq: AtomicU64,
    served: AtomicU64,
}

impl SimState {
    pub fn new(config: SimConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            control: RwLock::new(HashMap::new()),
            log: RequestLog::default(),
            cache: Mutex::new(HashSet::new()),
            seq: AtomicU64::new(1),
            served: AtomicU64::new(0),
        })
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.log.all()
    }

    pub fn set_fault(&self, model: Option<String>, fault: Option<Fault>) {
        let mut c = self.control.write();
        match fault {
            Some(f) => {
                c.insert(model, f);
            }
            None => {
                c.remove(&model);
            }
        }
    }

    /// Record the request (when enabled) and check its key. `Some` is the refusal to send.
    pub(crate) fn admit(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        unauthorized: impl FnOnce() -> Response,
    ) -> Option<Response> {
        if self.config.record {
            const KEPT: &[&str] = &[
                "authorization",
                "x-api-key",
                "x-goog-api-key",
                "anthropic-version",
                "anthropic-beta",
                "content-type",
                "user-agent",
            ];
            let headers = headers
                .iter()
                .filter(|(k, _)| KEPT.contains(&k.as_str()))
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            self.log.push(RecordedRequest {
                method: "POST".into(),
                path: path.to_string(),
                headers,
                body: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
            });
        }
        if let Some(want) = &self.config.require_key {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
                .or_else(|| headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()));
            if given != Some(want.as_str()) {
                return Some(unauthorized());
            }
        }
        None
    }

    /// The directives for a request: defaults, then the model name, then control faults.
    pub(crate) fn directives(&self, model: &str) -> Directives {
        let mut d = self.config.defaults.clone();
        d.apply_model_name(model);
        let c = self.control.read();
        if let Some(f) = c.get(&Some(model.to_string())).or_else(|| c.get(&None)) {
            d.fault = Some(f.clone());
        }
        d
    }

    pub(crate) fn plan(&self, req: &SimRequest, d: &Directives) -> Script {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.served.fetch_add(1, Ordering::Relaxed);
        let mut cached = 0;
        if self.config.prompt_cache
            && let Some((key, tokens)) = script::prefix_key(req)
        {
            let mut c = self.cache.lock();
            if !c.insert(key) {
                cached = tokens;
            }
            if c.len() > 100_000 {
                c.clear();
            }
        }
        script::plan(req, d, seq, cached)
    }
}

/// One piece of a streamed answer; `token` pieces are paced and counted for faults.
pub(crate) struct Frame {
    pub bytes: Bytes,
    pub token: bool,
}

impl Frame {
    pub fn meta(bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
            token: false,
        }
    }
    pub fn token(bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
            token: true,
        }
    }
}

fn token_gap(d: &Directives) -> Duration {
    if d.tokens_per_sec > 0.0 {
        Duration::from_secs_f64(1.0 / d.tokens_per_sec)
    } else {
        Duration::ZERO
    }
}

const STALL: Duration = Duration::from_secs(3600);

/// An SSE response that sends `frames` at the directed pace, injecting any stream fault.
pub(crate) fn paced_sse(frames: Vec<Frame>, d: &Directives) -> Response {
    let fault = d.fault.clone();
    let gap = token_gap(d);
    let ttft = Duration::from_millis(d.ttft_ms);
    let body = if ttft.is_zero() && gap.is_zero() && fault.is_none() {
        let mut all = Vec::with_capacity(frames.iter().map(|f| f.bytes.len()).sum());
        for f in &frames {
            all.extend_from_slice(&f.bytes);
        }
        Body::from(all)
    } else {
        let stream = futures::stream::unfold(
            (frames.into_iter(), 0usize, fault),
            move |(mut it, tokens, fault)| async move {
                let frame = it.next()?;
                if frame.token {
                    let hit = |n: usize| n == tokens;
                    match &fault {
                        Some(Fault::Disconnect { after_tokens }) if hit(*after_tokens) => {
                            return Some((
                                Err(std::io::Error::other("simulated disconnect")),
                                (it, tokens, None),
                            ));
                        }
                        Some(Fault::Malformed { after_tokens }) if hit(*after_tokens) => {
                            let bad = Bytes::from_static(
                                b"data: {\"id\": \"broken\", \"choices\": [\n\n",
                            );
                            let rest: Vec<_> = Vec::new();
                            return Some((Ok(bad), (rest.into_iter(), tokens, None)));
                        }
                        Some(Fault::Stall { after_tokens }) if hit(*after_tokens) => {
                            tokio::time::sleep(STALL).await;
                        }
                        _ => {}
                    }
                    tokio::time::sleep(if tokens == 0 { ttft } else { gap }).await;
                    Some((
                        Ok::<_, std::io::Error>(frame.bytes),
                        (it, tokens + 1, fault),
                    ))
                } else {
                    Some((Ok(frame.bytes), (it, tokens, fault)))
                }
            },
        );
        Body::from_stream(stream)
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("valid response")
}

/// A JSON response delivered after the time the answer takes to generate, with any fault.
pub(crate) async fn delayed_json(json: Vec<u8>, tokens: usize, d: &Directives) -> Response {
    let wait = Duration::from_millis(d.ttft_ms) + token_gap(d) * tokens as u32;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let body = match &d.fault {
        Some(Fault::Stall { .. }) => {
            tokio::time::sleep(STALL).await;
            Body::from(json)
        }
        Some(Fault::Malformed { .. }) => Body::from(json[..json.len() / 2].to_vec()),
        Some(Fault::Disconnect { .. }) => {
            let half = Bytes::from(json[..json.len() / 2].to_vec());
            Body::from_stream(futures::stream::iter(vec![
                Ok(half),
                Err(std::io::Error::other("simulated disconnect")),
            ]))
        }
        _ => Body::from(json),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("valid response")
}

/// The status and `Retry-After` of a directed status fault, if any.
pub(crate) fn status_fault(d: &Directives) -> Option<(StatusCode, Option<u64>)> {
    match d.fault {
        Some(Fault::Status { code, retry_after }) => Some((
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            retry_after,
        )),
        _ => None,
    }
}

pub(crate) fn error_response(
    status: StatusCode,
    retry_after: Option<u64>,
    body: serde_json::Value,
) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Some(s) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, s.into());
    }
    r
}

#[derive(Deserialize)]
struct ControlBody {
    model: Option<String>,
    fault: Option<Fault>,
}

async fn control(State(s): State<Arc<SimState>>, Json(b): Json<ControlBody>) -> StatusCode {
    s.set_fault(b.model, b.fault);
    StatusCode::NO_CONTENT
}

async fn clear_control(State(s): State<Arc<SimState>>) -> StatusCode {
    s.control.write().clear();
    StatusCode::NO_CONTENT
}

async fn requests(State(s): State<Arc<SimState>>) -> Json<Vec<RecordedRequest>> {
    Json(s.log.all())
}

async fn clear_requests(State(s): State<Arc<SimState>>) -> StatusCode {
    s.log.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(s): State<Arc<SimState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"served": s.served.load(Ordering::Relaxed)}))
}

/// The simulator's routes.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/chat/completions", post(openai::chat))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1beta/models/{target}", post(gemini::generate))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/_sim/control", post(control).delete(clear_control))
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// A running simulator.
pub struct SimHandle {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    task: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Bind `addr` and serve in the background.
pub async fn spawn(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
    // A deep accept queue: benchmarks open thousands of connections at once.
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(8192)?;
    let addr = listener.local_addr()?;
    let state = SimState::new(config);
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        // Small SSE writes must leave at once: with Nagle's algorithm a token waits for the
        // client's delayed ACK (about 40 ms), which would distort every latency measured.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("simulated provider stopped: {e}");
        }
    });
    Ok(SimHandle { addr, state, task })
}
