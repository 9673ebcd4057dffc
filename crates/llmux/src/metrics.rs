//! Prometheus metrics (`GET /metrics`). Traffic counters are derived from generation records
//! as they are queued, so they match what was metered; endpoint health, circuit state and the
//! metering queue are read at scrape time.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;
use parking_lot::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metering::GenerationRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api_type: String,
    model: String,
    provider: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    provider: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    provider: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    provider: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UptimeLabels {
    provider: String,
    model: String,
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreadLabels {
    thread: String,
}

fn seconds_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

/// The traffic counters. A registry is assembled at each scrape (the families are shared
/// handles), so the struct itself is freely shareable across threads.
#[derive(Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    duration: Family<ModelLabels, Histogram, fn() -> Histogram>,
    ttft: Family<ModelLabels, Histogram, fn() -> Histogram>,
    attempts: Family<AttemptLabels, Counter>,
    series: Arc<SeriesCache>,
}

/// Handles to the counters one kind of request (API, model, provider, status) adds to,
/// kept so that counting a request builds no label sets and looks nothing up in the families
/// (their label strings were a dozen allocations per request). A handle shares its value with
/// its family's entry; the others are made when first needed, so the exposition shows the
/// same series as before.
struct Series {
    api_type: String,
    model: String,
    provider: String,
    status: u16,
    requests: Counter,
    /// In `TOKEN_KINDS` order.
    tokens: [OnceLock<Counter>; 4],
    cost: OnceLock<Counter<f64, AtomicU64>>,
    duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    /// Attempts at this series' own provider that succeeded (the usual single attempt).
    attempts_ok: OnceLock<Counter>,
}

const TOKEN_KINDS: [&str; 4] = ["prompt", "completion", "reasoning", "cached"];

/// Series by their labels, looked up with borrowed labels (so without allocating). Hashed
/// with foldhash (seeded per process), not SipHash: four hashes of the labels a request
/// took about 1,000 instructions with SipHash.
#[derive(Default)]
struct SeriesCache {
    table: RwLock<HashTable<Arc<Series>>>,
    hasher: foldhash::fast::RandomState,
}

impl SeriesCache {
    fn hash(&self, api_type: &str, model: &str, provider: &str, status: u16) -> u64 {
        self.hasher.hash_one((api_type, model, provider, status))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The class of a failed request, for `llmux_errors_total`.
fn error_class(status: u16) -> &'static str {
    match status {
        400 | 422 => "bad_request",
        401 => "unauthorized",
        402 => "insufficient_credits",
        403 => "forbidden",
        404 => "no_endpoint",
        408 | 504 => "timeout",
        413 => "too_large",
        429 => "rate_limited",
        499 => "cancelled",
        503 => "unavailable",
        s if s >= 500 => "upstream",
        _ => "other",
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            requests: Family::default(),
            errors: Family::default(),
            tokens: Family::default(),
            cost: Family::default(),
            duration: Family::new_with_constructor(seconds_histogram),
            ttft: Family::new_with_constructor(seconds_histogram),
            attempts: Family::default(),
            series: Default::default(),
        }
    }

    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("llmux");
        r.register(
            "requests",
            "Requests, by API, model, provider and status",
            self.requests.clone(),
        );
        r.register("errors", "Failed requests, by class", self.errors.clone());
        r.register(
            "tokens",
            "Tokens, by model, provider and kind (prompt, completion, reasoning, cached)",
            self.tokens.clone(),
        );
        r.register(
            "cost_usd",
            "Charged cost in USD, by model and provider",
            self.cost.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from request to the end of the answer",
            self.duration.clone(),
        );
        r.register(
            "time_to_first_token_seconds",
            "Time from request to the first token",
            self.ttft.clone(),
        );
        r.register(
            "upstream_attempts",
            "Upstream attempts, by provider and outcome",
            self.attempts.clone(),
        );
        r
    }

    /// Count one request from its record.
    pub fn observe(&self, r: &GenerationRecord) {
        let model = r.model.as_deref().unwrap_or_default();
        let provider = r.provider.as_deref().unwrap_or_default();
        let s = self.series(&r.api_type, model, provider, r.status);
        s.requests.inc();
        if r.status != 200 || r.error.is_some() || r.cancelled {
            let class = if r.cancelled {
                "cancelled"
            } else if r.status == 200 {
                "upstream"
            } else {
                error_class(r.status)
            };
            self.errors
                .get_or_create(&ErrorLabels {
                    class: class.into(),
                })
                .inc();
        }
        for p in &r.provider_responses {
            let ok = p.status == Some(200);
            if ok && p.provider == provider {
                s.attempts_ok
                    .get_or_init(|| self.attempt_counter(provider, true))
                    .inc();
            } else {
                self.attempt_counter(&p.provider, ok).inc();
            }
        }
        if r.model.is_none() {
            return;
        }
        let u = &r.usage;
        for (i, n) in [
            u.prompt_tokens,
            u.completion_tokens,
            u.reasoning_tokens,
            u.cached_tokens,
        ]
        .into_iter()
        .enumerate()
        {
            if n > 0 {
                s.tokens[i]
                    .get_or_init(|| {
                        self.tokens
                            .get_or_create(&TokenLabels {
                                model: model.into(),
                                provider: provider.into(),
                                kind: TOKEN_KINDS[i].into(),
                            })
                            .clone()
                    })
                    .inc_by(n);
            }
        }
        let ml = || ModelLabels {
            model: model.into(),
            provider: provider.into(),
        };
        s.cost
            .get_or_init(|| self.cost.get_or_create(&ml()).clone())
            .inc_by(r.cost.to_f64());
        if let Some(ms) = r.latency_ms {
            s.duration
                .get_or_init(|| self.duration.get_or_create(&ml()).clone())
                .observe(ms as f64 / 1000.0);
        }
        if let Some(ms) = r.ttft_ms {
            s.ttft
                .get_or_init(|| self.ttft.get_or_create(&ml()).clone())
                .observe(ms as f64 / 1000.0);
        }
    }

    fn attempt_counter(&self, provider: &str, ok: bool) -> Counter {
        self.attempts
            .get_or_create(&AttemptLabels {
                provider: provider.into(),
                outcome: if ok { "ok" } else { "error" }.into(),
            })
            .clone()
    }

    /// The handles of one kind of request's series, made the first time it is seen.
    fn series(&self, api_type: &str, model: &str, provider: &str, status: u16) -> Arc<Series> {
        let cache = &self.series;
        let hash = cache.hash(api_type, model, provider, status);
        let is = |s: &Arc<Series>| {
            s.status == status
                && s.api_type == api_type
                && s.model == model
                && s.provider == provider
        };
        if let Some(s) = cache.table.read().find(hash, is) {
            return s.clone();
        }
        let mut table = cache.table.write();
        if let Some(s) = table.find(hash, is) {
            return s.clone();
        }
        let s = Arc::new(Series {
            requests: self
                .requests
                .get_or_create(&RequestLabels {
                    api_type: api_type.into(),
                    model: model.into(),
                    provider: provider.into(),
                    status: status.to_string(),
                })
                .clone(),
            api_type: api_type.into(),
            model: model.into(),
            provider: provider.into(),
            status,
            tokens: Default::default(),
            cost: OnceLock::new(),
            duration: OnceLock::new(),
            ttft: OnceLock::new(),
            attempts_ok: OnceLock::new(),
        });
        table.insert_unique(hash, s.clone(), |s| {
            cache.hash(&s.api_type, &s.model, &s.provider, s.status)
        });
        s
    }

    /// The text exposition: traffic, then the state read now.
    pub fn render(
        &self,
        router: &crate::router::Router,
        meter: &crate::metering::MeterStats,
    ) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry());
        // The scrape-time gauges, in a registry of their own.
        let mut now = Registry::with_prefix("llmux");
        let uptime = Family::<UptimeLabels, Gauge<f64, AtomicU64>>::default();
        now.register(
            "endpoint_uptime_percent",
            "Successful requests (429s excluded), per window",
            uptime.clone(),
        );
        let circuit = Family::<EndpointLabels, Gauge>::default();
        now.register(
            "endpoint_circuit_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            circuit.clone(),
        );
        let stable = Family::<EndpointLabels, Gauge>::default();
        now.register(
            "endpoint_stable",
            "1 when the endpoint had no significant recent failures",
            stable.clone(),
        );
        let ms = crate::clock::now_ms();
        for ((provider, model), h) in router.health.all() {
            let snap = h.snapshot(ms, router.health.settings());
            let el = EndpointLabels {
                provider: provider.clone(),
                model: model.clone(),
            };
            circuit.get_or_create(&el).set(snap.circuit.gauge());
            stable.get_or_create(&el).set(snap.stable as i64);
            for (window, v) in [
                ("5m", snap.uptime_5m),
                ("30m", snap.uptime_30m),
                ("1d", snap.uptime_1d),
            ] {
                if let Some(v) = v {
                    uptime
                        .get_or_create(&UptimeLabels {
                            provider: provider.clone(),
                            model: model.clone(),
                            window: window.into(),
                        })
                        .set(v);
                }
            }
        }
        let depth = Gauge::<i64>::default();
        depth.set(meter.pending.load(Ordering::Relaxed) as i64);
        now.register(
            "metering_queue_depth",
            "Generation records waiting for the database",
            depth,
        );
        let written = Counter::<u64>::default();
        written.inc_by(meter.written.load(Ordering::Relaxed));
        now.register("metering_written", "Generation records written", written);
        let connections = Family::<ThreadLabels, Gauge>::default();
        now.register(
            "open_connections",
            "Client connections being served, per serving thread",
            connections.clone(),
        );
        for (i, n) in crate::server::workers::open_connections()
            .into_iter()
            .enumerate()
        {
            connections
                .get_or_create(&ThreadLabels {
                    thread: (i + 1).to_string(),
                })
                .set(n as i64);
        }
        let mut more = String::new();
        let _ = encode(&mut more, &now);
        // Both parts end with `# EOF`; keep one.
        if let Some(body) = out.strip_suffix("# EOF\n") {
            format!("{body}{more}")
        } else {
            format!("{out}{more}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::ProviderResponse;

    fn record(
        model: Option<&str>,
        status: u16,
        prompt: u64,
        ttft: Option<i64>,
    ) -> GenerationRecord {
        let mut r = GenerationRecord {
            api_type: "completions".into(),
            model: model.map(Into::into),
            provider: model.map(|_| "simco".into()),
            status,
            latency_ms: Some(250),
            ttft_ms: ttft,
            cost: crate::money::Money(1_500_000_000_000),
            provider_responses: vec![ProviderResponse {
                provider: "simco".into(),
                endpoint: "simco/model".into(),
                status: Some(status),
                latency_ms: 250,
                error: None,
            }],
            ..Default::default()
        };
        r.usage.prompt_tokens = prompt;
        r.usage.completion_tokens = 7;
        r
    }

    fn exposition(m: &Metrics) -> String {
        let mut out = String::new();
        encode(&mut out, &m.registry()).unwrap();
        out
    }

    /// Requests counted through the cached handles land in their families' series, as many as
    /// were observed, with series made only for what was seen.
    #[test]
    fn cached_series_count_into_the_exposition() {
        let m = Metrics::new();
        let a = Some("openai/gpt-4o-mini");
        m.observe(&record(a, 200, 10, None));
        m.observe(&record(a, 200, 5, Some(100)));
        m.observe(&record(a, 502, 0, None));
        m.observe(&record(None, 400, 0, None));
        let text = exposition(&m);
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        let series = r#"model="openai/gpt-4o-mini",provider="simco""#;
        has(&format!(
            r#"llmux_requests_total{{api_type="completions",{series},status="200"}} 2"#
        ));
        has(&format!(
            r#"llmux_requests_total{{api_type="completions",{series},status="502"}} 1"#
        ));
        has(r#"llmux_requests_total{api_type="completions",model="",provider="",status="400"} 1"#);
        has(&format!(
            r#"llmux_tokens_total{{{series},kind="prompt"}} 15"#
        ));
        has(&format!(
            r#"llmux_tokens_total{{{series},kind="completion"}} 21"#
        ));
        has(&format!(r#"llmux_cost_usd_total{{{series}}} 4.5"#));
        has(&format!(
            r#"llmux_request_duration_seconds_count{{{series}}} 3"#
        ));
        has(&format!(
            r#"llmux_time_to_first_token_seconds_count{{{series}}} 1"#
        ));
        has(r#"llmux_upstream_attempts_total{provider="simco",outcome="ok"} 2"#);
        has(r#"llmux_upstream_attempts_total{provider="simco",outcome="error"} 2"#);
        assert!(
            !text.contains(r#"kind="reasoning""#),
            "no series for what was not seen:\n{text}"
        );
    }
}
