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
