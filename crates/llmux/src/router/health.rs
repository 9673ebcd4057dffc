//! Live health per endpoint, from real traffic: uptime over 5 minutes, 30 minutes and a day
//! (rate limits excluded), time to first token and throughput percentiles over 30 minutes,
//! recent stability, and a circuit breaker that stops sending to an endpoint that keeps
//! failing and probes it back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::config::RouterSettings;

/// Samples kept per endpoint for percentiles (the newest, within 30 minutes).
const MAX_SAMPLES: usize = 2000;
const MINUTES_PER_DAY: usize = 1440;
const SECOND_BUCKETS: usize = 120;

/// What one attempt at an endpoint came to.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub success: bool,
    /// A 429: neither a success nor a failure for uptime, but the endpoint is avoided until
    /// `retry_after`.
    pub rate_limited: bool,
    pub retry_after: Option<Duration>,
    /// Milliseconds to the first token.
    pub ttft_ms: Option<f64>,
    /// Output tokens per second.
    pub tokens_per_sec: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    Closed,
    /// Cooling down; only a probe may pass once the cool-down ends.
    Open,
    /// A probe is allowed (or in flight).
    HalfOpen,
}

impl Circuit {
    pub fn gauge(self) -> i64 {
        match self {
            Circuit::Closed => 0,
            Circuit::HalfOpen => 1,
            Circuit::Open => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p99: f64,
}

fn percentiles(mut v: Vec<f64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(Percentiles {
        p50: at(0.5),
        p75: at(0.75),
        p90: at(0.9),
        p99: at(0.99),
    })
}

/// How an endpoint stands, for routing and for `/endpoints`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Percent of successful requests (429s excluded), None without traffic.
    pub uptime_5m: Option<f64>,
    pub uptime_30m: Option<f64>,
    pub uptime_1d: Option<f64>,
    pub latency_30m: Option<Percentiles>,
    pub throughput_30m: Option<Percentiles>,
    /// No significant failures in the recent window, no open breaker, no pending Retry-After.
    pub stable: bool,
    pub circuit: Circuit,
}

#[derive(Default, Clone, Copy)]
struct Bucket {
    at: i64,
    ok: u32,
    failed: u32,
}

fn add(ring: &mut [Bucket], at: i64, success: bool) {
    let b = &mut ring[at.rem_euclid(ring.len() as i64) as usize];
    if b.at != at {
        *b = Bucket {
            at,
            ok: 0,
            failed: 0,
        };
    }
    if success {
        b.ok += 1;
    } else {
        b.failed += 1;
    }
}

/// Outcomes in the buckets of `from..=to`. A window shorter than the ring (the 30 s one, at
/// every request) visits only its own slots: slot `at % len` holds `at` if it was written
/// since, so nothing else can be in the window.
fn sum(ring: &[Bucket], from: i64, to: i64) -> (u64, u64) {
    let add = |(o, f): (u64, u64), b: &Bucket| (o + b.ok as u64, f + b.failed as u64);
    if to - from + 1 >= ring.len() as i64 {
        return ring
            .iter()
            .filter(|b| b.at >= from && b.at <= to)
            .fold((0, 0), add);
    }
    let mut slot = from.rem_euclid(ring.len() as i64) as usize;
    let mut total = (0, 0);
    for at in from..=to {
        if ring[slot].at == at {
            total = add(total, &ring[slot]);
        }
        slot = if slot + 1 == ring.len() { 0 } else { slot + 1 };
    }
    total
}

struct State {
    seconds: Vec<Bucket>,
    minutes: Vec<Bucket>,
    samples: VecDeque<(i64, Option<f64>, Option<f64>)>,
    consecutive_failures: u32,
    circuit: Circuit,
    open_until: i64,
    backoff: Duration,
    probing: bool,
    avoid_until: i64,
    /// The slow part of the last snapshot (uptimes, percentiles) and when it was taken:
    /// figures over minutes and hours need not be recomputed for every request.
    figures: Option<(i64, Figures)>,
    /// What this node saw since it last told the cluster, and what the cluster (every node)
    /// saw lately; see [`crate::cluster::health`].
    unshared: Shared,
    cluster: Shared,
}

/// An endpoint's recent outcomes as exchanged between nodes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    /// Successes and failures (429s excluded) in the recent window.
    pub ok: u32,
    pub failed: u32,
    /// Circuit open (no requests) until, Unix ms.
    pub open_until: i64,
    /// Rate-limited (`Retry-After`) until, Unix ms.
    pub avoid_until: i64,
}

/// A snapshot's figures over long windows, reused for [`FIGURES_TTL_MS`].
#[derive(Debug, Clone, Copy)]
struct Figures {
    uptime_5m: Option<f64>,
    uptime_30m: Option<f64>,
    uptime_1d: Option<f64>,
    latency_30m: Option<Percentiles>,
    throughput_30m: Option<Percentiles>,
}

const FIGURES_TTL_MS: i64 = 1000;

impl Default for State {
    fn default() -> Self {
        Self {
            seconds: vec![Bucket::default(); SECOND_BUCKETS],
            minutes: vec![Bucket::default(); MINUTES_PER_DAY],
            samples: VecDeque::new(),
            consecutive_failures: 0,
            circuit: Circuit::Closed,
            open_until: 0,
            backoff: Duration::ZERO,
            probing: false,
            avoid_until: 0,
            figures: None,
            unshared: Shared::default(),
            cluster: Shared::default(),
        }
    }
}

/// One endpoint's health.
#[derive(Default)]
pub struct EndpointHealth {
    state: Mutex<State>,
}

/// The health of every endpoint, keyed by provider slug and model id.
pub struct Health {
    /// provider slug → model id → health (looked up by `&str`, without allocating).
    /// foldhash, not SipHash: the keys are endpoints (the catalog's, or other nodes' through
    /// the cluster), never a request's text, so flood resistance buys nothing on this lookup
    /// made four times a request.
    endpoints: RwLock<HashMap<String, HashMap<String, Arc<EndpointHealth>>>>,
    settings: RouterSettings,
}

impl Health {
    pub fn new(settings: RouterSettings) -> Self {
        Self {
            endpoints: RwLock::new(HashMap::new()),
            settings,
        }
    }

    pub fn of(&self, provider: &str, model: &str) -> Arc<EndpointHealth> {
        if let Some(h) = self
            .endpoints
            .read()
            .get(provider)
            .and_then(|m| m.get(model))
        {
            return h.clone();
        }
        self.endpoints
            .write()
            .entry(provider.to_string())
            .or_default()
            .entry(model.to_string())
            .or_default()
            .clone()
    }

    /// Every endpoint seen so far, for metrics.
    pub fn all(&self) -> Vec<((String, String), Arc<EndpointHealth>)> {
        self.endpoints
            .read()
            .iter()
            .flat_map(|(p, models)| {
                models
                    .iter()
                    .map(|(m, h)| ((p.clone(), m.clone()), h.clone()))
            })
            .collect()
    }

    pub fn record(&self, provider: &str, model: &str, o: Outcome) {
        self.of(provider, model)
            .record(o, crate::clock::now_ms(), &self.settings);
    }

    pub fn snapshot(&self, provider: &str, model: &str) -> Snapshot {
        self.of(provider, model)
            .snapshot(crate::clock::now_ms(), &self.settings)
    }

    pub fn settings(&self) -> &RouterSettings {
        &self.settings
    }
}

impl EndpointHealth {
    pub fn record(&self, o: Outcome, now: i64, settings: &RouterSettings) {
        let mut s = self.state.lock();
        // Failures, and the first samples of a new endpoint, show at once; with a hundred
        // samples, one more barely moves a percentile and the figures follow within a second.
        if !o.success || s.samples.len() < 100 {
            s.figures = None;
        }
        if let Some(ra) = o.retry_after {
            s.avoid_until = s.avoid_until.max(now + ra.as_millis() as i64);
            s.unshared.avoid_until = s.avoid_until;
        }
        if o.rate_limited {
            return;
        }
        if o.success {
            s.unshared.ok += 1;
        } else {
            s.unshared.failed += 1;
        }
        add(&mut s.seconds, now.div_euclid(1000), o.success);
        add(&mut s.minutes, now.div_euclid(60_000), o.success);
        if o.success {
            if o.ttft_ms.is_some() || o.tokens_per_sec.is_some() {
                s.samples.push_back((now, o.ttft_ms, o.tokens_per_sec));
                if s.samples.len() > MAX_SAMPLES {
                    s.samples.pop_front();
                }
            }
            s.consecutive_failures = 0;
            if s.circuit != Circuit::Closed {
                // The probe got through: close, and forget the recent failures it answered.
                s.circuit = Circuit::Closed;
                s.backoff = Duration::ZERO;
                s.probing = false;
                for b in &mut s.seconds {
                    b.failed = 0;
                }
            }
        } else {
            s.consecutive_failures += 1;
            let reopen = s.circuit == Circuit::HalfOpen;
            if reopen || s.consecutive_failures >= settings.breaker_failures {
                s.backoff = if reopen {
                    (s.backoff * 2).min(Duration::from_secs(300))
                } else {
                    settings.breaker_open
                };
                s.circuit = Circuit::Open;
                s.open_until = now + s.backoff.as_millis() as i64;
                s.unshared.open_until = s.open_until;
                s.probing = false;
            }
        }
    }

    fn circuit(s: &mut State, now: i64) -> Circuit {
        if s.circuit == Circuit::Open && now >= s.open_until {
            s.circuit = Circuit::HalfOpen;
        }
        s.circuit
    }

    /// May a request be sent now? A half-open breaker lets one probe through at a time.
    pub fn admit(&self, now: i64) -> bool {
        let mut s = self.state.lock();
        if now < s.cluster.open_until && s.circuit == Circuit::Closed {
            // Another node opened this endpoint's breaker: let it probe.
            return false;
        }
        match Self::circuit(&mut s, now) {
            Circuit::Closed => true,
            Circuit::Open => false,
            Circuit::HalfOpen if !s.probing => {
                s.probing = true;
                true
            }
            Circuit::HalfOpen => false,
        }
    }

    /// A probe that was admitted but not sent gives its turn back.
    pub fn release_probe(&self) {
        self.state.lock().probing = false;
    }

    pub fn circuit_now(&self, now: i64) -> Circuit {
        Self::circuit(&mut self.state.lock(), now)
    }

    pub fn snapshot(&self, now: i64, settings: &RouterSettings) -> Snapshot {
        let mut s = self.state.lock();
        let circuit = Self::circuit(&mut s, now);
        let second = now.div_euclid(1000);
        let window = settings
            .unstable_window
            .as_secs()
            .min(SECOND_BUCKETS as u64 - 1) as i64;
        let (ok, failed) = sum(&s.seconds, second - window + 1, second);
        // Significant: at least two failures, and at least as many as successes, here or in
        // the cluster.
        let significant = (failed >= 2 && failed >= ok)
            || (s.cluster.failed >= 2 && s.cluster.failed >= s.cluster.ok);
        let circuit = if circuit == Circuit::Closed && now < s.cluster.open_until {
            Circuit::Open
        } else {
            circuit
        };
        let avoid_until = s.avoid_until.max(s.cluster.avoid_until);
        let figures = match s.figures {
            Some((at, f)) if now - at < FIGURES_TTL_MS && now >= at => f,
            _ => {
                let f = Self::figures(&s, now);
                s.figures = Some((now, f));
                f
            }
        };
        Snapshot {
            uptime_5m: figures.uptime_5m,
            uptime_30m: figures.uptime_30m,
            uptime_1d: figures.uptime_1d,
            latency_30m: figures.latency_30m,
            throughput_30m: figures.throughput_30m,
            stable: !significant && circuit == Circuit::Closed && now >= avoid_until,
            circuit,
        }
    }

    /// What this node saw since the last call (to tell the cluster).
    pub fn take_unshared(&self) -> Shared {
        std::mem::take(&mut self.state.lock().unshared)
    }

    /// What the cluster saw lately (every node, this one included).
    pub fn set_cluster(&self, shared: Shared) {
        let mut s = self.state.lock();
        if s.cluster != shared {
            s.cluster = shared;
            s.figures = None;
        }
    }

    fn figures(s: &State, now: i64) -> Figures {
        let minute = now.div_euclid(60_000);
        let uptime = |minutes: i64| {
            let (ok, failed) = sum(&s.minutes, minute - minutes + 1, minute);
            (ok + failed > 0).then(|| 100.0 * ok as f64 / (ok + failed) as f64)
        };
        let since = now - 30 * 60_000;
        let recent = || s.samples.iter().filter(move |x| x.0 >= since);
        Figures {
            uptime_5m: uptime(5),
            uptime_30m: uptime(30),
            uptime_1d: uptime(MINUTES_PER_DAY as i64),
            latency_30m: percentiles(recent().filter_map(|x| x.1).collect()),
            throughput_30m: percentiles(recent().filter_map(|x| x.2).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RouterSettings {
        RouterSettings {
            unstable_window: Duration::from_secs(30),
            breaker_failures: 3,
            breaker_open: Duration::from_secs(10),
            sticky_idle: Duration::from_secs(600),
            seed: None,
        }
    }

    fn ok() -> Outcome {
        Outcome {
            success: true,
            rate_limited: false,
            retry_after: None,
            ttft_ms: Some(100.0),
            tokens_per_sec: Some(50.0),
        }
    }

    fn fail() -> Outcome {
        Outcome {
            success: false,
            ..ok()
        }
    }

    #[test]
    fn uptime_percentiles_and_breaker() {
        let h = EndpointHealth::default();
        let s = settings();
        let t = 1_000_000_000;
        for i in 0..3 {
            h.record(ok(), t + i, &s);
        }
        h.record(
            Outcome {
                rate_limited: true,
                ..fail()
            },
            t,
            &s,
        );
        h.record(fail(), t + 5, &s);
        let snap = h.snapshot(t + 10, &s);
        assert_eq!(snap.uptime_5m, Some(75.0));
        assert_eq!(snap.latency_30m.unwrap().p50, 100.0);
        assert!(snap.stable);
        h.record(fail(), t + 6, &s);
        h.record(fail(), t + 7, &s);
        let snap = h.snapshot(t + 10, &s);
        assert_eq!(snap.circuit, Circuit::Open);
        assert!(!snap.stable);
        assert!(!h.admit(t + 20));
        // After the cool-down one probe passes; its success closes the breaker.
        assert!(h.admit(t + 10_010));
        assert!(!h.admit(t + 10_011), "one probe at a time");
        h.record(ok(), t + 10_020, &s);
        assert!(h.snapshot(t + 10_030, &s).stable);
    }

    #[test]
    fn window_sums_visit_only_the_windows_slots_and_agree_with_a_full_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let full = |ring: &[Bucket], from: i64, to: i64| {
            ring.iter()
                .filter(|b| b.at >= from && b.at <= to)
                .fold((0, 0), |(o, f), b| (o + b.ok as u64, f + b.failed as u64))
        };
        for _ in 0..200 {
            let mut ring = vec![Bucket::default(); 120];
            let now = rng.random_range(1_000..1_500i64);
            // Writes scattered over the last 400 seconds: some slots stale, some reused.
            for _ in 0..rng.random_range(0..300) {
                add(
                    &mut ring,
                    now - rng.random_range(0..400),
                    rng.random_bool(0.8),
                );
            }
            for window in [1, 30, 119, 120, 121, 500] {
                let from = now - window + 1;
                assert_eq!(
                    sum(&ring, from, now),
                    full(&ring, from, now),
                    "window {window}"
                );
            }
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let h = EndpointHealth::default();
        let s = settings();
        h.record(
            Outcome {
                rate_limited: true,
                retry_after: Some(Duration::from_secs(5)),
                ..fail()
            },
            0,
            &s,
        );
        assert!(!h.snapshot(1000, &s).stable);
        assert!(h.snapshot(6000, &s).stable);
        assert_eq!(h.snapshot(6000, &s).uptime_5m, None, "429s do not count");
    }
}
