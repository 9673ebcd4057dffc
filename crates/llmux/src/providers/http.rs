//! Talking HTTP to upstreams: pooled connections per provider and serving thread (plain
//! HTTP/1.1 in `http1_pool`; TLS, and HTTP/2 where negotiated or configured, through
//! hyper-util), bounded bodies, and an SSE reader with an idle timeout.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use llmux_protocol::sse::{SseDecoder, SseEvent};
use parking_lot::Mutex;
use rustls_platform_verifier::ConfigVerifierExt;

use super::http1_pool::{Http1Pool, Lease};
use super::{Adapter, UpstreamError, UpstreamErrorKind, UpstreamRequest};
use crate::catalog::{Catalog, Provider};
use crate::server::poll_before_sleep::AwaitingUpstream;

/// Largest non-streamed upstream answer accepted.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Largest error body read (the rest is not needed to explain the error).
const MAX_ERROR_BYTES: usize = 64 << 10;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type Client = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// An upstream's answer, its body still to be read.
pub struct UpstreamResponse {
    inner: http::Response<Incoming>,
    /// The request's hold on its connection, given back when the body is done.
    held: Held,
    /// Until the body is done, the serving thread's idle moments are waits for it.
    awaiting: AwaitingUpstream,
}

/// What a request holds of its connection until its answer's body is dropped, kept for what
/// its `Drop` does (declared after the body wherever both are kept: the body goes first).
#[allow(dead_code)]
enum Held {
    /// An HTTP/1.1 connection of llmux's own pool, handed back when dropped.
    Lease(Lease),
    /// A place on a multiplexed connection (HTTP/2), counted until dropped.
    Slot(Slot),
}

/// Requests in flight on one HTTP/2 connection before another is opened. Servers cap the
/// streams of a connection (`SETTINGS_MAX_CONCURRENT_STREAMS`: 100 to 256 for most, 200 for
/// hyper's), and hyper's pool keeps one HTTP/2 connection per host, queueing what exceeds
/// the cap: past it, new streams waited for running ones to end (a serving thread with 200
/// long streams open to one provider held the 201st until its first-token timeout).
const STREAMS_PER_CONNECTION: usize = 100;

/// hyper's connections, used directly: reqwest's layers (URL parsing, redirect policy,
/// default-header merging, boxed futures) were a twelfth of the gateway's CPU per request.
///
/// Each serving thread has its own clients ([`crate::server::workers::current`]): a pooled
/// connection is driven by a task of the thread that opened it, and a request on another
/// thread would wake that thread for every read and write.
pub struct Upstream {
    shards: Vec<foldhash::HashMap<String, ProviderClients>>,
}

/// One provider's connections on one thread.
enum ProviderClients {
    /// Plain HTTP/1.1 (an `http://` URL without `http2_prior_knowledge`): llmux's own pool,
    /// a connection per concurrent request.
    Http1(Arc<Http1Pool>),
    /// Where HTTP/2 may be spoken (TLS, which negotiates it, or prior knowledge): hyper-util's
    /// client, which holds one multiplexed connection, so clients are added as the requests
    /// in flight grow, [`STREAMS_PER_CONNECTION`] each. Over TLS without HTTP/2 its pool
    /// opens a connection per concurrent request.
    Multiplexed(Box<Multiplexed>),
}

struct Multiplexed {
    first: Client,
    first_in_flight: Arc<AtomicUsize>,
    more: Mutex<Vec<(Client, Arc<AtomicUsize>)>>,
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    http2_only: bool,
}

/// A request counted against its client's connection until dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>) -> Slot {
        count.fetch_add(1, Ordering::Relaxed);
        Slot(count.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ProviderClients {
    fn new(p: &Provider, tls: &rustls::ClientConfig) -> anyhow::Result<ProviderClients> {
        let tls_url = p
            .base_url
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case("https:"));
        if !p.http2_prior_knowledge && !tls_url {
            let pool = Http1Pool::new(&p.base_url, p.connect_timeout)?;
            return Ok(ProviderClients::Http1(Arc::new(pool)));
        }
        Ok(ProviderClients::Multiplexed(Box::new(Multiplexed {
            first: client_for(tls, p.connect_timeout, p.http2_prior_knowledge),
            first_in_flight: Arc::default(),
            more: Mutex::default(),
            tls: tls.clone(),
            connect_timeout: p.connect_timeout,
            http2_only: p.http2_prior_knowledge,
        })))
    }
}

impl Multiplexed {
    /// A client with room for one more request.
    fn pick(&self) -> (Cow<'_, Client>, Slot) {
        if self.first_in_flight.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION {
            return (
                Cow::Borrowed(&self.first),
                Slot::take(&self.first_in_flight),
            );
        }
        let mut more = self.more.lock();
        let free = more
            .iter()
            .position(|(_, n)| n.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION);
        let i = free.unwrap_or_else(|| {
            let client = client_for(&self.tls, self.connect_timeout, self.http2_only);
            more.push((client, Arc::default()));
            more.len() - 1
        });
        let (client, in_flight) = &more[i];
        (Cow::Owned(client.clone()), Slot::take(in_flight))
    }
}

fn client_for(tls: &rustls::ClientConfig, connect_timeout: Duration, http2_only: bool) -> Client {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    let mut b = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024);
    if http2_only {
        b.http2_only(true);
    }
    b.build(https)
}

fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamErrorKind {
    if e.is_connect() {
        UpstreamErrorKind::Connect
    } else {
        UpstreamErrorKind::Broken
    }
}

pub(super) fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

impl Upstream {
    /// Clients for every provider, for `threads` serving threads and the other threads.
    pub fn new(catalog: &Catalog, threads: usize) -> anyhow::Result<Upstream> {
        crate::init_tls();
        // The operating system's trust store, as reqwest and browsers use it.
        let tls = rustls::ClientConfig::with_platform_verifier()?;
        let shards = (0..=threads)
            .map(|_| {
                catalog
                    .providers()
                    .iter()
                    .map(|p| Ok((p.slug.clone(), ProviderClients::new(p, &tls)?)))
                    .collect()
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Upstream { shards })
    }

    /// Send the request and wait for the response head. Error statuses come back as
    /// [`UpstreamError`] carrying the upstream's message and `Retry-After`.
    pub async fn send(
        &self,
        provider: &Provider,
        adapter: &dyn Adapter,
        req: UpstreamRequest,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let shard = crate::server::workers::current().min(self.shards.len() - 1);
        let clients = self.shards[shard].get(&provider.slug).ok_or_else(|| {
            UpstreamError::new(UpstreamErrorKind::Connect, "provider has no client")
        })?;
        let awaiting = AwaitingUpstream::begin();
        let mut request = http::Request::new(Full::new(req.body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = req.uri;
        *request.headers_mut() = req.headers;
        let (inner, held) = match clients {
            ProviderClients::Http1(pool) => {
                let (resp, lease) = pool.send(request).await.map_err(|e| {
                    UpstreamError::new(
                        e.kind,
                        format!("{} request failed: {}", provider.name, e.message),
                    )
                })?;
                (resp, Held::Lease(lease))
            }
            ProviderClients::Multiplexed(m) => {
                let (client, slot) = m.pick();
                let resp = client.request(request).await.map_err(|e| {
                    UpstreamError::new(
                        classify(&e),
                        format!("{} request failed: {}", provider.name, describe(&e)),
                    )
                })?;
                (resp, Held::Slot(slot))
            }
        };
        let resp = UpstreamResponse {
            inner,
            held,
            awaiting,
        };
        let status = resp.inner.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .inner
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_limited(resp, MAX_ERROR_BYTES, true)
            .await
            .unwrap_or_default();
        let mut err = UpstreamError::new(
            UpstreamErrorKind::Status(status.as_u16()),
            adapter.error_message(&body),
        );
        err.retry_after = retry_after;
        Err(err)
    }

    /// The whole body of a successful response, bounded.
    pub async fn read_body(resp: UpstreamResponse) -> Result<Bytes, UpstreamError> {
        read_limited(resp, MAX_RESPONSE_BYTES, false).await
    }
}

async fn read_limited(
    resp: UpstreamResponse,
    max: usize,
    truncate: bool,
) -> Result<Bytes, UpstreamError> {
    let UpstreamResponse {
        inner,
        held: _held,
        awaiting: _awaiting,
    } = resp;
    let mut body = inner.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            UpstreamError::new(
                UpstreamErrorKind::Broken,
                format!("reading the response: {}", describe(&e)),
            )
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        if out.len() + chunk.len() > max {
            if truncate {
                out.extend_from_slice(&chunk[..max - out.len()]);
                break;
            }
            return Err(UpstreamError::new(
                UpstreamErrorKind::InvalidResponse,
                format!("response larger than {max} bytes"),
            ));
        }
        if out.is_empty() && body.is_end_stream() {
            return Ok(chunk); // the whole body in one piece: no copy
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

type ByteStream = BodyDataStream<Incoming>;

/// Reads SSE events from an upstream response, failing if it stays silent for `idle`.
pub struct SseReader {
    bytes: ByteStream,
    _held: Held,
    _awaiting: AwaitingUpstream,
    decoder: SseDecoder,
    ready: std::collections::VecDeque<SseEvent>,
    scratch: Vec<SseEvent>,
    ended: bool,
}

impl SseReader {
    pub fn new(resp: UpstreamResponse) -> Self {
        Self {
            bytes: resp.inner.into_body().into_data_stream(),
            _held: resp.held,
            _awaiting: resp.awaiting,
            decoder: SseDecoder::default(),
            ready: Default::default(),
            scratch: Vec::new(),
            ended: false,
        }
    }

    /// An event already received, without waiting for more.
    pub fn next_ready(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    /// The next event; `Ok(None)` at the end of the stream.
    pub async fn next(&mut self, idle: Duration) -> Result<Option<SseEvent>, UpstreamError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            if self.ended {
                return Ok(None);
            }
            let chunk = match tokio::time::timeout(idle, self.bytes.next()).await {
                Err(_) => {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Timeout,
                        format!("the upstream sent nothing for {}s", idle.as_secs()),
                    ));
                }
                Ok(None) => {
                    self.ended = true;
                    self.decoder.finish(&mut self.scratch).map_err(|e| {
                        UpstreamError::new(UpstreamErrorKind::InvalidResponse, e.to_string())
                    })?;
                    self.ready.extend(self.scratch.drain(..));
                    continue;
                }
                Ok(Some(Err(e))) => {
                    return Err(UpstreamError::new(
                        UpstreamErrorKind::Broken,
                        format!("the upstream stream broke: {}", describe(&e)),
                    ));
                }
                Ok(Some(Ok(b))) => b,
            };
            self.decoder.feed(&chunk, &mut self.scratch).map_err(|e| {
                UpstreamError::new(UpstreamErrorKind::InvalidResponse, e.to_string())
            })?;
            self.ready.extend(self.scratch.drain(..));
        }
    }
}
