//! Connections to plain-HTTP/1.1 upstreams (a local vLLM, llama.cpp or Ollama, a sidecar, the
//! simulated provider), pooled per provider and serving thread by llmux itself.
//!
//! Why not hyper-util's pool, which upstreams over TLS or HTTP/2 keep using (it negotiates ALPN
//! and multiplexes): it keys every request by scheme and host, hashed with SipHash three times a
//! request, and hands each HTTP/1.1 connection back to the pool through a task spawned per
//! request, which waits for the connection to be ready again. Here the key is known (one pool
//! per provider), and a connection goes back when its answer is dropped: by then hyper's
//! connection task has read the answer's end and is ready for the next request (a task waits
//! for it only when it is not). The figures: PERFORMANCE.md, "What profiling found".

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::UpstreamErrorKind;

/// Idle connections kept per pool (per provider and serving thread); a connection handed back
/// beyond that is closed.
const MAX_IDLE: usize = 1024;
/// A connection idle for longer is closed rather than reused (hyper-util's pool's setting, as
/// llmux had it). Most servers close theirs sooner, after 5 to 75 s: a connection found closed
/// is skipped, and a request that meets one as it closes goes out again on a new one.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type Sender = SendRequest<Full<Bytes>>;

/// One provider's HTTP/1.1 connections on one serving thread.
pub(super) struct Http1Pool {
    /// `host:port`, as connected to.
    addr: String,
    /// The `Host` header of every request.
    host: http::HeaderValue,
    connect_timeout: Duration,
    /// [`IDLE_TIMEOUT`] (shorter in tests).
    idle_timeout: Duration,
    /// Most recently used last: the next request takes the warmest connection.
    idle: Mutex<VecDeque<Idle>>,
    /// Whether a task is closing connections left idle past the timeout (one runs while any
    /// connection is idle: some servers, Go's among them, never close theirs).
    reaping: AtomicBool,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Why a request got no answer head.
#[derive(Debug)]
pub(super) struct PoolError {
    pub kind: UpstreamErrorKind,
    pub message: String,
}

impl PoolError {
    fn connect(message: String) -> PoolError {
        PoolError {
            kind: UpstreamErrorKind::Connect,
            message,
        }
    }

    fn broken(e: hyper::Error) -> PoolError {
        PoolError {
            kind: UpstreamErrorKind::Broken,
            message: super::http::describe(&e),
        }
    }
}

/// A connection lent to one request, handed back to its pool when dropped (with the answer's
/// body, which is dropped first).
pub(super) struct Lease {
    sender: Option<Sender>,
    pool: Arc<Http1Pool>,
}

impl Http1Pool {
    /// A pool for the upstream at `base_url` (an `http://` URL, checked when the catalog was
    /// loaded).
    pub fn new(base_url: &str, connect_timeout: Duration) -> anyhow::Result<Http1Pool> {
        let uri = http::Uri::try_from(base_url)?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("{base_url} has no host"))?;
        // `host()` keeps an IPv6 address's brackets, as `host:port` needs them.
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(80);
        let host_header = match port {
            80 => host.to_string(),
            p => format!("{host}:{p}"),
        };
        Ok(Http1Pool {
            addr: format!("{host}:{port}"),
            host: http::HeaderValue::try_from(host_header)?,
            connect_timeout,
            idle_timeout: IDLE_TIMEOUT,
            idle: Mutex::default(),
            reaping: AtomicBool::new(false),
        })
    }

    /// Send `req` (its URI absolute, as built from the provider's `base_url`) on an idle
    /// connection, or on a new one, and wait for the answer's head.
    pub async fn send(
        self: &Arc<Self>,
        mut req: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, Lease), PoolError> {
        // HTTP/1.1 to an origin server: the path alone on the request line, the host in `Host`.
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = None;
        parts.authority = None;
        *req.uri_mut() =
            http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("/"));
        req.headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.host.clone());

        if let Some(mut sender) = self.take_idle() {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(sender))),
                Err(mut e) => match e.take_message() {
                    // Not written: the connection was closed while it sat idle (the server's
                    // keep-alive ran out as the request was sent). A new connection takes it.
                    Some(unsent) => req = unsent,
                    None => return Err(PoolError::broken(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let resp = sender.send_request(req).await.map_err(PoolError::broken)?;
        Ok((resp, self.lease(sender)))
    }

    fn lease(self: &Arc<Self>, sender: Sender) -> Lease {
        Lease {
            sender: Some(sender),
            pool: self.clone(),
        }
    }

    /// The most recently used idle connection that is still open and fresh.
    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock();
        while let Some(c) = idle.pop_back() {
            if c.since.elapsed() >= self.idle_timeout {
                idle.clear(); // the rest waited longer still
                return None;
            }
            if c.sender.is_ready() {
                return Some(c.sender);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, sender: Sender) {
        let now = Instant::now();
        {
            // Connections left idle too long are the reaper's to close, not each request's.
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE {
                idle.push_back(Idle { sender, since: now });
            }
        }
        if !self.reaping.load(Ordering::Relaxed) && !self.reaping.swap(true, Ordering::Relaxed) {
            self.start_reaper();
        }
    }

    /// Drop the connections idle past the timeout (the oldest are first).
    fn close_stale(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
    }

    /// A task on this thread closing the connections left idle past the timeout, every
    /// timeout, until none is idle; the next connection handed back starts another. It holds
    /// the pool weakly, so that it ends with it.
    fn start_reaper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaping.store(false, Ordering::Relaxed);
            return;
        };
        let pool: Weak<Http1Pool> = Arc::downgrade(self);
        let period = self.idle_timeout;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let mut idle = pool.idle.lock();
                pool.close_stale(&mut idle, Instant::now());
                if idle.is_empty() {
                    // Under the lock: a connection handed back after this starts a new task.
                    pool.reaping.store(false, Ordering::Relaxed);
                    return;
                }
            }
        });
    }

    async fn connect(&self) -> Result<Sender, PoolError> {
        let connecting = TcpStream::connect(self.addr.as_str());
        let tcp = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(PoolError::connect(format!(
                    "connecting to {}: {e}",
                    self.addr
                )));
            }
            Err(_) => {
                return Err(PoolError::connect(format!(
                    "connecting to {}: no answer within {} s",
                    self.addr,
                    self.connect_timeout.as_secs_f32()
                )));
            }
        };
        // Requests and answers are small writes each; Nagle's algorithm would hold them back.
        tcp.set_nodelay(true)
            .map_err(|e| PoolError::connect(format!("connecting to {}: {e}", self.addr)))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| PoolError::connect(format!("connecting to {}: {e}", self.addr)))?;
        // Driven on this thread, as every request that takes this connection will be.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut sender) = self.sender.take() else {
            return;
        };
        if sender.is_ready() {
            self.pool.put(sender);
            return;
        }
        if sender.is_closed() {
            return;
        }
        // The connection's task has not yet read the answer's end (or is closing it, if the
        // answer was dropped unread): hand it back once it is ready, if it ever is.
        let pool = self.pool.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server answering every request on a connection with `answer`, counting connections;
    /// with `close_after_answer` it closes each connection after one answer, without saying so.
    async fn server(answer: &'static str, close_after_answer: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buf[..n]);
                        // Requests here have bodies of a few bytes, sent with the head.
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&seen[..end]).to_string();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |v| v.trim().parse().unwrap());
                            if seen.len() < end + 4 + len {
                                break;
                            }
                            assert!(head.starts_with("POST /v1/x HTTP/1.1"), "{head}");
                            assert!(head.contains("host: 127.0.0.1:"), "{head}");
                            seen.drain(..end + 4 + len);
                            if sock.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            if close_after_answer {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    fn request(url: &str) -> http::Request<Full<Bytes>> {
        let mut req = http::Request::new(Full::new(Bytes::from_static(b"{}")));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = format!("{url}/x").parse().unwrap();
        req
    }

    async fn send_and_read(pool: &Arc<Http1Pool>, url: &str) -> Result<Bytes, PoolError> {
        let (resp, lease) = pool.send(request(url)).await?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        drop(lease);
        Ok(body)
    }

    fn pool(url: &str) -> Arc<Http1Pool> {
        Arc::new(Http1Pool::new(url, Duration::from_secs(2)).unwrap())
    }

    /// A pool whose connections go stale after `idle_timeout`.
    fn pool_idle_for(url: &str, idle_timeout: Duration) -> Arc<Http1Pool> {
        let mut pool = Http1Pool::new(url, Duration::from_secs(2)).unwrap();
        pool.idle_timeout = idle_timeout;
        Arc::new(pool)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_one_after_another_share_one_connection() {
        let (url, accepted) = server(OK, false).await;
        let pool = pool(&url);
        for _ in 0..20 {
            assert_eq!(&send_and_read(&pool, &url).await.unwrap()[..], b"ok");
            // Handed back as the answer was dropped, not later by a task.
            assert_eq!(pool.idle.lock().len(), 1);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_at_once_each_get_a_connection_then_reuse_them() {
        let (url, accepted) = server(OK, false).await;
        let pool = pool(&url);
        for _ in 0..3 {
            let answers =
                futures::future::join_all((0..4).map(|_| send_and_read(&pool, &url))).await;
            assert!(
                answers
                    .iter()
                    .all(|a| a.as_ref().is_ok_and(|b| &b[..] == b"ok"))
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    /// A server that closes each connection after its answer (keep-alive ran out): the idle
    /// connection is found closed, or the request comes back unsent, and a new connection
    /// carries it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_the_server_closed_while_idle_is_not_used() {
        let (url, accepted) = server(OK, true).await;
        let pool = pool(&url);
        for i in 0..10 {
            assert_eq!(&send_and_read(&pool, &url).await.unwrap()[..], b"ok");
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_idle_for_too_long_is_closed_not_reused() {
        let (url, accepted) = server(OK, false).await;
        let pool = pool_idle_for(&url, Duration::from_millis(50));
        send_and_read(&pool, &url).await.unwrap();
        send_and_read(&pool, &url).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        send_and_read(&pool, &url).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle.lock().len(), 1, "the stale one is gone");
    }

    /// With no more requests, a connection idle past the timeout is still closed (by the
    /// pool's reaper), and the reaper ends when nothing is left idle.
    #[tokio::test(flavor = "current_thread")]
    async fn idle_connections_are_closed_without_further_requests() {
        let (url, _) = server(OK, false).await;
        let pool = pool_idle_for(&url, Duration::from_millis(50));
        send_and_read(&pool, &url).await.unwrap();
        assert_eq!(pool.idle.lock().len(), 1);
        assert!(pool.reaping.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(pool.idle.lock().is_empty());
        assert!(!pool.reaping.load(Ordering::Relaxed), "the reaper ended");
        // A connection handed back later starts another.
        send_and_read(&pool, &url).await.unwrap();
        assert!(pool.reaping.load(Ordering::Relaxed));
    }

    /// An answer dropped before its end leaves its connection mid-answer: it is closed, never
    /// handed to the next request.
    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_dropped_unread_does_not_give_back_its_connection() {
        let (url, accepted) = server(
            "HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\npartial",
            false,
        )
        .await;
        let pool = pool(&url);
        let (resp, lease) = pool.send(request(&url)).await.unwrap();
        drop(resp);
        drop(lease);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.idle.lock().is_empty());
        let (_resp, _lease) = pool.send(request(&url)).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        drop(listener);
        let err = pool(&url).send(request(&url)).await.err().unwrap();
        assert!(matches!(err.kind, UpstreamErrorKind::Connect), "{err:?}");
        assert!(
            err.message.starts_with("connecting to 127.0.0.1:"),
            "{err:?}"
        );
    }

    #[test]
    fn the_host_header_names_a_port_only_when_it_is_not_80() {
        let p = Http1Pool::new("http://vllm.internal/v1", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (p.addr.as_str(), p.host.to_str().unwrap()),
            ("vllm.internal:80", "vllm.internal")
        );
        let p = Http1Pool::new("http://[::1]:8000/v1", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (p.addr.as_str(), p.host.to_str().unwrap()),
            ("[::1]:8000", "[::1]:8000")
        );
    }
}
