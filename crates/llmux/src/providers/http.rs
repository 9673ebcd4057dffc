//! Talking HTTP to upstreams: one pooled client per provider (HTTP/1.1 keep-alive, HTTP/2
//! where negotiated or configured), bounded bodies, and an SSE reader with an idle timeout.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use llmux_protocol::sse::{SseDecoder, SseEvent};

use super::{Adapter, UpstreamError, UpstreamErrorKind, UpstreamRequest};
use crate::catalog::{Catalog, Provider};

/// Largest non-streamed upstream answer accepted.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Largest error body read (the rest is not needed to explain the error).
const MAX_ERROR_BYTES: usize = 64 << 10;

pub struct Upstream {
    clients: HashMap<String, reqwest::Client>,
}

fn client_for(p: &Provider) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(p.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .user_agent(concat!("llmux/", env!("CARGO_PKG_VERSION")));
    if p.http2_prior_knowledge {
        b = b.http2_prior_knowledge();
    }
    Ok(b.build()?)
}

fn classify(e: &reqwest::Error) -> UpstreamErrorKind {
    if e.is_connect() {
        UpstreamErrorKind::Connect
    } else if e.is_timeout() {
        UpstreamErrorKind::Timeout
    } else {
        UpstreamErrorKind::Broken
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
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
    pub fn new(catalog: &Catalog) -> anyhow::Result<Upstream> {
        crate::init_tls();
        let mut clients = HashMap::new();
        for p in catalog.providers() {
            clients.insert(p.slug.clone(), client_for(p)?);
        }
        Ok(Upstream { clients })
    }

    /// Send the request and wait for the response head. Error statuses come back as
    /// [`UpstreamError`] carrying the upstream's message and `Retry-After`.
    pub async fn send(
        &self,
        provider: &Provider,
        adapter: &dyn Adapter,
        req: UpstreamRequest,
    ) -> Result<reqwest::Response, UpstreamError> {
        let client = self.clients.get(&provider.slug).ok_or_else(|| {
            UpstreamError::new(UpstreamErrorKind::Connect, "provider has no client")
        })?;
        let mut rb = client.post(&req.url).body(req.body);
        for (k, v) in req.headers {
            rb = rb.header(k, v);
        }
        let resp = rb.send().await.map_err(|e| {
            UpstreamError::new(
                classify(&e),
                format!("{} request failed: {}", provider.name, describe(&e)),
            )
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
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
    pub async fn read_body(resp: reqwest::Response) -> Result<Bytes, UpstreamError> {
        read_limited(resp, MAX_RESPONSE_BYTES, false).await
    }
}

async fn read_limited(
    resp: reqwest::Response,
    max: usize,
    truncate: bool,
) -> Result<Bytes, UpstreamError> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            UpstreamError::new(
                classify(&e),
                format!("reading the response: {}", describe(&e)),
            )
        })?;
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
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Reads SSE events from an upstream response, failing if it stays silent for `idle`.
pub struct SseReader {
    bytes: ByteStream,
    decoder: SseDecoder,
    ready: std::collections::VecDeque<SseEvent>,
    scratch: Vec<SseEvent>,
    ended: bool,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            bytes: Box::pin(resp.bytes_stream()),
            decoder: SseDecoder::default(),
            ready: Default::default(),
            scratch: Vec::new(),
            ended: false,
        }
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
