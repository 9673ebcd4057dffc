//! Prometheus metrics (`GET /metrics`). Traffic counters are derived from generation records
//! as they are queued, so they match what was metered; endpoint health, circuit state and the
//! metering queue are read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

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
        let model = r.model.clone().unwrap_or_default();
        let provider = r.provider.clone().unwrap_or_default();
        self.requests
            .get_or_create(&RequestLabels {
                api_type: r.api_type.clone(),
                model: model.clone(),
                provider: provider.clone(),
                status: r.status.to_string(),
            })
            .inc();
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
            let outcome = if p.status == Some(200) { "ok" } else { "error" };
            self.attempts
                .get_or_create(&AttemptLabels {
                    provider: p.provider.clone(),
                    outcome: outcome.into(),
                })
                .inc();
        }
        if r.model.is_none() {
            return;
        }
        let u = &r.usage;
        for (kind, n) in [
            ("prompt", u.prompt_tokens),
            ("completion", u.completion_tokens),
            ("reasoning", u.reasoning_tokens),
            ("cached", u.cached_tokens),
        ] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        model: model.clone(),
                        provider: provider.clone(),
                        kind: kind.into(),
                    })
                    .inc_by(n);
            }
        }
        let ml = ModelLabels { model, provider };
        self.cost.get_or_create(&ml).inc_by(r.cost.to_f64());
        if let Some(ms) = r.latency_ms {
            self.duration.get_or_create(&ml).observe(ms as f64 / 1000.0);
        }
        if let Some(ms) = r.ttft_ms {
            self.ttft.get_or_create(&ml).observe(ms as f64 / 1000.0);
        }
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
