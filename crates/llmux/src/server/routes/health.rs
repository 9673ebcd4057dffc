//! `GET /healthz`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::pipeline::Gateway;

pub async fn healthz(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let s = gw.meter.stats();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "metering": {
            "pending": s.pending.load(Ordering::Relaxed),
            "written": s.written.load(Ordering::Relaxed),
        },
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(gw): State<Arc<Gateway>>) -> impl axum::response::IntoResponse {
    let body = gw.meter.metrics().render(&gw.router, gw.meter.stats());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}
