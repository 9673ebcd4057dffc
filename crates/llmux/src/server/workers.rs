//! Serving threads: one single-threaded runtime per core, all accepting from the same
//! listening socket, each running its connections' requests start to finish (the upstream
//! call and the stream relay included), as nginx's workers do.
//!
//! Why not one work-stealing runtime: on a request's path, tasks wake one another (the
//! connection, the request's driving task, the upstream connection). Across threads each such
//! wake-up is a futex call and a context switch, and an idle worker is woken to steal at every
//! yield; at one connection that was four context switches per request and a third of llmux's
//! CPU. Background work (metering writer, billing sync, health) stays on the main runtime.
//!
//! Every thread accepts from the same listening socket, and each new connection goes to the
//! thread serving the fewest: a thread that accepts it while another serves fewer hands it
//! over. Without that, whichever thread woke first took a whole burst (in one run in five,
//! all of wrk's 32 connections landed on one thread, and a core sat idle).

use std::cell::Cell;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::poll_before_sleep;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// This thread's serving index, 1 to N; 0 on any other thread. Per-thread resources (the
/// upstream connection pools) are picked with it, so a request never waits on a connection
/// driven by another thread.
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Connections being served by each thread (index 0 is thread 1), for the balancing and for
/// `/metrics`. One gateway per process: set by the first [`start`].
static OPEN: OnceLock<Arc<[AtomicUsize]>> = OnceLock::new();

/// Connections being served by each serving thread, in thread order (empty before [`start`]).
pub fn open_connections() -> Vec<usize> {
    OPEN.get()
        .map(|open| open.iter().map(|n| n.load(Ordering::Relaxed)).collect())
        .unwrap_or_default()
}

/// What the serving threads share to spread connections.
struct Balance {
    open: Arc<[AtomicUsize]>,
    /// Each thread's inbox of connections another thread accepted for it.
    inboxes: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
}

impl Balance {
    /// The thread (0-based) a new connection should go to: the one serving the fewest,
    /// `me` when it is among them. Counted there at once, so a burst spreads evenly.
    fn pick(&self, me: usize) -> usize {
        let mine = self.open[me].load(Ordering::Relaxed);
        let (least, count) = self
            .open
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|(_, n)| *n)
            .unwrap_or((me, mine));
        let target = if count < mine { least } else { me };
        self.open[target].fetch_add(1, Ordering::Relaxed);
        target
    }
}

/// Counts a connection out of its thread when it closes.
struct Served {
    open: Arc<[AtomicUsize]>,
    thread: usize,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.open[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct Workers {
    threads: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    release: watch::Sender<bool>,
    served: Vec<oneshot::Receiver<()>>,
}

async fn until_set(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Start `n` serving threads on `listener` (its connections get `TCP_NODELAY`); an idle
/// thread watches for events for up to `poll_before_sleep` before it sleeps
/// (`server::poll_before_sleep`).
pub fn start(
    listener: std::net::TcpListener,
    app: Router,
    n: usize,
    poll_before_sleep: Duration,
) -> io::Result<Workers> {
    listener.set_nonblocking(true)?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (release, release_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
    let mut threads = Vec::with_capacity(n);
    let mut served = Vec::with_capacity(n);
    let open: Arc<[AtomicUsize]> = (0..n).map(|_| AtomicUsize::new(0)).collect();
    let _ = OPEN.set(open.clone());
    let (inboxes, mut inbox_rxs): (Vec<_>, Vec<_>) =
        (0..n).map(|_| mpsc::unbounded_channel()).unzip();
    let balance = Arc::new(Balance { open, inboxes });
    for i in 1..=n {
        let listener = listener.try_clone()?;
        let (balance, inbox) = (balance.clone(), inbox_rxs.remove(0));
        let app = app.clone();
        let (shutdown_rx, release_rx, ready) =
            (shutdown_rx.clone(), release_rx.clone(), ready_tx.clone());
        let (served_tx, served_rx) = oneshot::channel();
        served.push(served_rx);
        let thread = std::thread::Builder::new()
            .name(format!("llmux-serve-{i}"))
            // Request bodies are parsed here (reserved address space; only what is used is
            // resident).
            .stack_size(llmux_protocol::error::PARSING_STACK_BYTES)
            .spawn(move || {
                INDEX.with(|c| c.set(i));
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(poll_before_sleep::before_park)
                    .build();
                let runtime = match runtime {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    poll_before_sleep::enable(listener.as_raw_fd(), poll_before_sleep);
                    let _ = ready.send(Ok(()));
                    tokio::spawn(keep_a_timer_due());
                    let serving = async {
                        let me = Thread {
                            index: i - 1,
                            balance,
                            app,
                        };
                        me.serve(listener, inbox, shutdown_rx).await;
                        let _ = served_tx.send(());
                        std::future::pending::<()>().await
                    };
                    // Requests' own tasks (a stream's metering after its client left) and
                    // database connections opened here live on this runtime: it is kept until
                    // the gateway has written its last records.
                    tokio::select! {
                        _ = serving => {}
                        _ = until_set(release_rx) => {}
                    }
                });
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    let workers = Workers {
        threads,
        shutdown,
        release,
        served,
    };
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                workers.stop();
                return Err(e);
            }
            Err(_) => {
                workers.stop();
                return Err(io::Error::other("a serving thread stopped while starting"));
            }
        }
    }
    Ok(workers)
}

impl Workers {
    /// Stop accepting; open connections finish their requests.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once every thread's connections are closed (after [`Workers::shutdown`]).
    pub async fn served(&mut self) {
        futures::future::join_all(self.served.iter_mut()).await;
    }

    /// End the threads (whatever still runs on them is dropped) and wait for them.
    pub fn stop(self) {
        self.shutdown.send_replace(true);
        self.release.send_replace(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One serving thread's side of the accept loop.
struct Thread {
    /// 0-based.
    index: usize,
    balance: Arc<Balance>,
    app: Router,
}

impl Thread {
    /// Accept connections (serving each here or handing it to a thread serving fewer) and
    /// serve those handed over, until `shutdown`; then wait for the open ones to finish their
    /// requests (idle keep-alive connections are closed at once).
    async fn serve(
        self,
        listener: TcpListener,
        mut inbox: mpsc::UnboundedReceiver<std::net::TcpStream>,
        shutdown: watch::Receiver<bool>,
    ) {
        let graceful = GracefulShutdown::new();
        let stop = until_set(shutdown.clone());
        tokio::pin!(stop);
        loop {
            let tcp = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let target = self.balance.pick(self.index);
                        if target == self.index {
                            tcp
                        } else {
                            // Taken off this thread's reactor, registered with the other's.
                            match tcp.into_std() {
                                Ok(tcp) => {
                                    if let Err(mpsc::error::SendError(tcp)) =
                                        self.balance.inboxes[target].send(tcp)
                                    {
                                        // That thread has stopped: served here.
                                        self.balance.open[target].fetch_sub(1, Ordering::Relaxed);
                                        self.balance.open[self.index].fetch_add(1, Ordering::Relaxed);
                                        self.spawn_std(tcp, &graceful, &shutdown);
                                    }
                                }
                                Err(e) => {
                                    self.balance.open[target].fetch_sub(1, Ordering::Relaxed);
                                    tracing::debug!("an accepted connection could not be handed over: {e}");
                                }
                            }
                            continue;
                        }
                    }
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                },
                Some(tcp) = inbox.recv() => {
                    self.spawn_std(tcp, &graceful, &shutdown);
                    continue;
                }
                _ = &mut stop => break,
            };
            self.spawn(tcp, &graceful, &shutdown);
        }
        drop(listener);
        // Connections handed over as this thread stopped are served (or closed, if they have
        // sent nothing) like the rest.
        inbox.close();
        while let Ok(tcp) = inbox.try_recv() {
            self.spawn_std(tcp, &graceful, &shutdown);
        }
        graceful.shutdown().await;
    }

    /// Serve a connection handed over by another thread (counted on this one).
    fn spawn_std(
        &self,
        tcp: std::net::TcpStream,
        graceful: &GracefulShutdown,
        shutdown: &watch::Receiver<bool>,
    ) {
        match TcpStream::from_std(tcp) {
            Ok(tcp) => self.spawn(tcp, graceful, shutdown),
            Err(e) => {
                self.balance.open[self.index].fetch_sub(1, Ordering::Relaxed);
                tracing::debug!("a connection handed over could not be served: {e}");
            }
        }
    }

    /// Serve one connection (already counted on this thread) in a task of its own.
    fn spawn(&self, tcp: TcpStream, graceful: &GracefulShutdown, shutdown: &watch::Receiver<bool>) {
        let counted = Served {
            open: self.balance.open.clone(),
            thread: self.index,
        };
        let watcher = graceful.watcher();
        let service = TowerToHyperService::new(self.app.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _counted = counted;
            // Stream chunks are small writes: without TCP_NODELAY each would wait for the
            // client's delayed ACK (Nagle), adding ~40 ms to the first token.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY not set: {e}");
            }
            // A connection that has sent nothing yet is closed at once by a stop.
            let http1 = tokio::select! {
                http1 = opens_with_http1(&tcp) => http1,
                _ = until_set(shutdown) => return,
            };
            // HTTP/1 connections go straight to hyper's HTTP/1 server. hyper-util's automatic
            // one reads the first bytes to tell HTTP/2's preface apart and hands them back
            // to the HTTP/1 server, which then doubles its read buffer to 16 KB for the rest
            // of the head: 8 KB more for every open connection.
            let result = if http1 {
                let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
                watcher.watch(conn).await.map_err(Into::into)
            } else {
                // Boxed: a task is as large as its largest state, and the automatic server's
                // (which holds an HTTP/2 connection's) would make every HTTP/1 connection's
                // task that large too.
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tcp), service);
                Box::pin(watcher.watch(conn)).await
            };
            if let Err(e) = result {
                tracing::trace!("connection closed: {e}");
            }
        });
    }
}

/// Whether a connection's first bytes are an HTTP/1 request, not the start of HTTP/2's
/// preface (`PRI * HTTP/2.0`). Peeked, not read: the server reads them again. Undecided
/// (fewer than three bytes so far, or an error) counts as not HTTP/1: the automatic server
/// then finds out.
async fn opens_with_http1(tcp: &TcpStream) -> bool {
    let mut start = [0u8; 3];
    matches!(tcp.peek(&mut start).await, Ok(3) if &start != b"PRI")
}

/// Keep a timer due within a second on this thread, for as long as it serves. tokio's time
/// driver wakes its own thread (a write to its eventfd, then one more round of `epoll_wait`)
/// whenever a timer is set to fire before every pending one (tokio-rs/tokio#5207): with few
/// requests in flight that was every request, for its first-token, keep-alive and upstream
/// timeouts (one `write(2)` per request at one connection, `strace`). With this timer pending,
/// those (a second or more away) are set without waking anything.
async fn keep_a_timer_due() {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
    }
}

/// As hyper's and axum's servers do: a connection reset before it was accepted is nothing;
/// anything else (out of file descriptors, most often) is logged and accepting pauses, so as
/// not to spin on an error that persists.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
