//! The metering writer's scheduling class (Linux): `SCHED_IDLE` while it keeps up, the normal
//! class as soon as it falls behind.
//!
//! Why: the writer works in bursts (a batch of up to a thousand records, some milliseconds of
//! CPU). On a small machine requests waited behind such bursts, most likely on the core the
//! client, the upstream or a serving thread was to run on next: at one connection, 5% of
//! llmux's requests took 0.25-3 ms where nginx's took under 0.1 ms; with the writer kept from
//! running, llmux's tail was nginx's (PERFORMANCE.md). A `SCHED_IDLE` thread runs only
//! when nothing else wants the core, and anything woken there takes the core at once; a
//! lower nice value alone did not do it. But under sustained load nothing leaves a core free,
//! and an idle-class writer would fall behind for good: so a serving thread that finds two
//! batches queued puts the writer back in the normal class (never waiting for it), as does a
//! flush someone waits for (`GET /generation`) and shutdown, and the writer goes idle again
//! once less than a batch waits behind the one it takes.
//!
//! Leaving `SCHED_IDLE` needs `CAP_SYS_NICE` or an `RLIMIT_NICE` of 20; a writer that could
//! not leave it is never put there ([`WriterPriority::new`] tries the round trip on a thread of
//! its own first).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Shared by the writer (which registers its thread and demotes itself) and the serving
/// threads (which promote it).
#[derive(Default)]
pub struct WriterPriority {
    /// Whether switching classes works here (probed once).
    usable: bool,
    /// The writer's thread id; 0 until it registers.
    tid: AtomicI32,
    /// Whether the writer is in the idle class. Read without the lock on the hot path.
    idle: AtomicBool,
    /// Held while the class is switched, so that `idle` always says what the kernel has.
    switching: Mutex<()>,
}

impl WriterPriority {
    /// `enabled`: the setting (`metering.writer_idle_class`); also off where switching back
    /// from the idle class fails.
    pub fn new(enabled: bool) -> WriterPriority {
        WriterPriority {
            usable: enabled && sys::round_trip_works(),
            ..Default::default()
        }
    }

    /// Called on the writer's thread once, before its first batch.
    pub fn register_writer(&self) {
        if self.usable {
            self.tid.store(sys::gettid(), Ordering::Relaxed);
        }
    }

    /// The writer, as it takes a batch: idle class when less than another batch waits behind
    /// it, normal otherwise.
    pub fn writer_keeping_up(&self, keeping_up: bool) {
        let tid = self.tid.load(Ordering::Relaxed);
        if tid == 0 || self.idle.load(Ordering::Relaxed) == keeping_up {
            return;
        }
        let _held = self.switching.lock().unwrap_or_else(|e| e.into_inner());
        self.switch(tid, keeping_up);
    }

    /// A serving thread that found the writer behind, or someone waiting for it: back to the
    /// normal class, unless another thread is switching it right now (the next record tries
    /// again; the writer itself decides again at its next batch).
    pub fn writer_behind(&self) {
        let tid = self.tid.load(Ordering::Relaxed);
        if tid == 0 || !self.idle.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(_held) = self.switching.try_lock() {
            self.switch(tid, false);
        }
    }

    /// Whether the writer is in the idle class now.
    #[cfg(test)]
    fn writer_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    fn switch(&self, tid: i32, idle: bool) {
        if self.idle.load(Ordering::Relaxed) == idle {
            return;
        }
        match sys::set_idle_class(tid, idle) {
            Ok(()) => self.idle.store(idle, Ordering::Relaxed),
            Err(e) => tracing::warn!("metering writer's scheduling class: {e}"),
        }
    }
}

#[cfg(target_os = "linux")]
mod sys {
    pub fn gettid() -> i32 {
        rustix::thread::gettid().as_raw_nonzero().get()
    }

    /// Put thread `tid` in the idle class, or back in the normal one.
    #[allow(unsafe_code)]
    pub fn set_idle_class(tid: i32, idle: bool) -> std::io::Result<()> {
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY (one of the crate's three `unsafe`s; see the workspace's lints): a system call
        // given a thread id and a pointer to a live, initialized `sched_param` it only reads;
        // it touches no memory of ours otherwise.
        let r = unsafe { libc::sched_setscheduler(tid, policy, &param) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Whether a thread can enter the idle class and leave it again (tried on a thread of its
    /// own, which ends either way).
    pub fn round_trip_works() -> bool {
        std::thread::Builder::new()
            .name("llmux-probe".into())
            .spawn(|| {
                let tid = gettid();
                set_idle_class(tid, true).is_ok() && set_idle_class(tid, false).is_ok()
            })
            .ok()
            .and_then(|t| t.join().ok())
            .unwrap_or(false)
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub fn gettid() -> i32 {
        0
    }
    pub fn set_idle_class(_: i32, _: bool) -> std::io::Result<()> {
        Err(std::io::Error::other("only on Linux"))
    }
    pub fn round_trip_works() -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The class the kernel has for thread `tid`.
    fn policy_of(tid: i32) -> String {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Field 41 is the policy (after the name, which may hold spaces: counted from `)`).
        let after = stat.rsplit_once(')').unwrap().1;
        after.split_whitespace().nth(38).unwrap().to_string()
    }

    #[test]
    fn the_writer_goes_idle_when_keeping_up_and_back_when_behind() {
        let p = WriterPriority::new(true);
        if !p.usable {
            // Without CAP_SYS_NICE or RLIMIT_NICE the writer stays in the normal class.
            eprintln!("switching back from SCHED_IDLE is not allowed here: nothing to test");
            return;
        }
        p.register_writer();
        let tid = sys::gettid();
        assert_eq!(policy_of(tid), "0", "SCHED_OTHER to begin with");
        p.writer_keeping_up(true);
        assert!(p.writer_idle());
        assert_eq!(policy_of(tid), "5", "SCHED_IDLE");
        p.writer_behind();
        assert!(!p.writer_idle());
        assert_eq!(policy_of(tid), "0");
        p.writer_keeping_up(true);
        p.writer_keeping_up(false);
        assert_eq!(policy_of(tid), "0");
    }

    #[test]
    fn disabled_it_never_switches() {
        let p = WriterPriority::new(false);
        p.register_writer();
        p.writer_keeping_up(true);
        assert!(!p.writer_idle());
        assert_eq!(policy_of(sys::gettid()), "0");
    }
}
