//! A serving thread with nothing to run watches its runtime's epoll instance for a short while
//! (`server.poll_before_sleep_us`, default 200 µs) before it sleeps in `epoll_wait`.
//!
//! Why: at light load a request makes its serving thread sleep twice, once for the upstream's
//! answer and once for the client's next request. Each sleep costs a context switch, and on a
//! virtual machine, whose virtual CPU halts when idle, a wake-up through the hypervisor (the
//! guest kernel's `haltpoll` idle driver polls before halting for the same reason). With a near
//! upstream both answers often come within a couple of hundred microseconds. Watching for them
//! (a `poll(2)` of the epoll instance, which reports ready events without taking them, between
//! yields of the core to anything else runnable) lets the thread find them already there, as
//! nginx's workers often do by chance: at one connection, 1.9 context switches per request
//! became 0.1-0.4, and the p50 went from about 360 to 240 µs (PERFORMANCE.md).
//!
//! The price is CPU while watching: up to about 40 µs more per request when requests come singly
//! (one every 5 ms). A thread whose watches keep ending empty watches exponentially less often
//! (at most one park in 64 when idle), and a busy thread always has a task to run, so it never
//! gets here. Misses are counted apart for the two waits: parks while an upstream's answer is
//! awaited on the thread ([`AwaitingUpstream`]) and parks with none. Counted together, a
//! client pausing between requests (a miss each time) made the thread sleep through the
//! upstream's answers too, which come within the budget from a near upstream.
//!
//! The runtime does not expose its epoll instance: it is found as the one whose registered
//! descriptors (`/proc/self/fdinfo`) include this thread's listening socket. Where it cannot
//! be found, or off Linux, the thread sleeps at once, as without this.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How a serving thread watches before it sleeps.
#[derive(Clone, Copy)]
struct Watch {
    /// The runtime's epoll instance, owned by the runtime (outlives every park).
    epoll: i32,
    /// Longest watch.
    budget: Duration,
    /// Parks while an upstream's answer is awaited.
    awaiting: Misses,
    /// Parks with none: waiting for clients.
    idle: Misses,
}

/// One kind of park's recent watches.
#[derive(Clone, Copy, Default)]
struct Misses {
    /// Watches in a row that ended with nothing ready.
    missed: u32,
    /// Parks to let pass without watching, after misses.
    skip: u32,
}

thread_local! {
    static WATCH: Cell<Option<Watch>> = const { Cell::new(None) };
    /// Upstream exchanges open on this thread.
    static AWAITING: Arc<AtomicU32> = Arc::default();
}

/// An upstream exchange open on the thread that began it, from sending the request until its
/// answer is read or dropped: that thread's parks meanwhile are waits for the upstream. Sent
/// along with the answer; dropped on another thread, it still counts down its own thread's.
pub struct AwaitingUpstream(Arc<AtomicU32>);

impl AwaitingUpstream {
    pub fn begin() -> AwaitingUpstream {
        AWAITING.with(|a| {
            a.fetch_add(1, Ordering::Relaxed);
            AwaitingUpstream(a.clone())
        })
    }
}

impl Drop for AwaitingUpstream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Most parks let pass between two watches that keep missing.
const MAX_SKIP: u32 = 64;

/// Start watching on this thread (a serving thread, inside its runtime, after its listener is
/// registered). `budget` zero turns watching off.
pub fn enable(listener_fd: i32, budget: Duration) {
    if budget.is_zero() {
        return;
    }
    match epoll_holding(listener_fd) {
        Some(epoll) => WATCH.with(|w| {
            w.set(Some(Watch {
                epoll,
                budget,
                awaiting: Misses::default(),
                idle: Misses::default(),
            }))
        }),
        None => tracing::warn!(
            "a serving thread's epoll instance was not found: it sleeps without watching first \
             (server.poll_before_sleep_us has no effect)"
        ),
    }
}

/// The runtime's park hook (`on_thread_park`): called when the thread has no task to run,
/// just before it sleeps.
pub fn before_park() {
    WATCH.with(|cell| {
        if let Some(w) = cell.get() {
            let awaiting = AWAITING.with(|a| a.load(Ordering::Relaxed) > 0);
            cell.set(Some(w.park(awaiting, watch)));
        }
    });
}

impl Watch {
    /// One park, awaiting an upstream or not: watch (with `watch`) unless that kind's misses in
    /// a row say to let this one pass.
    fn park(mut self, awaiting: bool, watch: impl FnOnce(i32, Duration) -> bool) -> Watch {
        let (epoll, budget) = (self.epoll, self.budget);
        let m = if awaiting {
            &mut self.awaiting
        } else {
            &mut self.idle
        };
        if m.skip > 0 {
            m.skip -= 1;
        } else if watch(epoll, budget) {
            m.missed = 0;
        } else {
            m.missed = m.missed.saturating_add(1);
            m.skip = (1u32 << m.missed.min(6)).min(MAX_SKIP);
        }
        self
    }
}

/// Whether an event became ready within `budget`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn watch(epoll: i32, budget: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    use std::os::fd::BorrowedFd;
    // SAFETY (one of the crate's three `unsafe`s; see the workspace's lints): `epoll` is the
    // epoll instance of the runtime whose park hook this is, found on this thread once that
    // runtime ran; the hook runs only while that runtime is alive and about to wait on it, so
    // the descriptor is open and is not closed while borrowed here.
    let fd = unsafe { BorrowedFd::borrow_raw(epoll) };
    let start = Instant::now();
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&rustix::event::Timespec::default())) {
            Ok(n) if n > 0 => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
        if start.elapsed() >= budget {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(not(target_os = "linux"))]
fn watch(_: i32, _: Duration) -> bool {
    false
}

/// The epoll instance of this process that has `fd` registered.
#[cfg(target_os = "linux")]
fn epoll_holding(fd: i32) -> Option<i32> {
    let wanted = fd.to_string();
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventpoll]");
        if !is_epoll {
            continue;
        }
        let name = entry.file_name();
        let Some(epoll) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{epoll}")) else {
            continue;
        };
        // Lines like `tfd:        7 events:       19 data: ...`, one per registered descriptor.
        let registered = info.lines().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("tfd:") && words.next() == Some(wanted.as_str())
        });
        if registered {
            return Some(epoll);
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
fn epoll_holding(_: i32) -> Option<i32> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn new_watch() -> Watch {
        Watch {
            epoll: 0,
            budget: Duration::from_micros(50),
            awaiting: Misses::default(),
            idle: Misses::default(),
        }
    }

    #[test]
    fn misses_in_a_row_let_ever_more_parks_pass_and_a_hit_resets_them() {
        let mut w = new_watch();
        let mut watched = Vec::new();
        for _ in 0..300 {
            let mut did = false;
            w = w.park(false, |_, _| {
                did = true;
                false
            });
            watched.push(did);
        }
        let at: Vec<usize> = (0..watched.len()).filter(|&i| watched[i]).collect();
        // Watches at 0, then after 2, 4, 8, 16, 32, 64, 64... parks let pass.
        assert_eq!(&at[..8], &[0, 3, 8, 17, 34, 67, 132, 197]);
        while w.idle.skip > 0 {
            w = w.park(false, |_, _| unreachable!("a park let pass does not watch"));
        }
        w = w.park(false, |_, _| true);
        assert_eq!((w.idle.missed, w.idle.skip), (0, 0));
        let mut did = false;
        w.park(false, |_, _| {
            did = true;
            true
        });
        assert!(did, "after a hit the next park watches");
    }

    #[test]
    fn a_client_pausing_between_requests_does_not_stop_the_watch_for_upstream_answers() {
        // A request at a time, the client pausing longer than the budget before each: the
        // park for the upstream's answer finds it, the park for the next request misses.
        let mut w = new_watch();
        let (mut awaited_watches, mut idle_watches) = (0, 0);
        for _ in 0..100 {
            w = w.park(true, |_, _| {
                awaited_watches += 1;
                true
            });
            w = w.park(false, |_, _| {
                idle_watches += 1;
                false
            });
        }
        assert_eq!(awaited_watches, 100, "every upstream answer is watched for");
        assert!(
            idle_watches < 10,
            "the pauses are watched ever less often: {idle_watches}"
        );
    }

    #[test]
    fn an_exchange_counts_on_the_thread_that_began_it_until_dropped_anywhere() {
        let awaiting = || AWAITING.with(|a| a.load(Ordering::Relaxed));
        assert_eq!(awaiting(), 0);
        let first = AwaitingUpstream::begin();
        let second = AwaitingUpstream::begin();
        assert_eq!(awaiting(), 2);
        drop(first);
        assert_eq!(awaiting(), 1);
        std::thread::spawn(move || drop(second)).join().unwrap();
        assert_eq!(
            awaiting(),
            0,
            "dropped on another thread, it counts down this one's"
        );
    }

    #[test]
    fn the_watch_finds_the_runtimes_epoll_and_ends_on_its_first_event() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let unregistered = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            assert_eq!(epoll_holding(unregistered.as_raw_fd()), None);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let epoll = epoll_holding(listener.as_raw_fd()).expect("the runtime's epoll");

            // Nothing ready: the watch lasts its budget and reports nothing.
            let started = Instant::now();
            assert!(!watch(epoll, Duration::from_millis(20)));
            assert!(started.elapsed() >= Duration::from_millis(20));

            // A connection waiting to be accepted makes the listener ready.
            let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            assert!(watch(epoll, Duration::from_secs(30)));
            drop(unregistered);
        });
    }
}
