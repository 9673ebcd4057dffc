//! The simulator's OpenAI embeddings endpoint (`POST /v1/embeddings`): deterministic unit
//! vectors, usage counted the simulator's way (words).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::server::{SimState, delayed_json, error_response, status_fault};

fn vector(text: &str, dims: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..dims)
        .map(|i| {
            let mut h = DefaultHasher::new();
            (text, i).hash(&mut h);
            (h.finish() % 2000) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    for x in &mut v {
        *x = (*x / norm * 1e6).round() / 1e6;
    }
    v
}

pub(crate) async fn embeddings(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bad = |m: &str| {
        error_response(
            StatusCode::BAD_REQUEST,
            None,
            json!({"error": {"message": m, "type": "invalid_request_error", "param": null, "code": null}}),
        )
    };
    if let Some(r) = state.admit("/v1/embeddings", &headers, &body, || {
        error_response(
            StatusCode::UNAUTHORIZED,
            None,
            json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}),
        )
    }) {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad("invalid JSON");
    };
    let Some(model) = v["model"].as_str() else {
        return bad("model: required");
    };
    let inputs: Vec<String> = match &v["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect(),
        _ => return bad("input: expected a string or an array"),
    };
    let d = state.directives(model);
    if let Some((status, retry_after)) = status_fault(&d) {
        return error_response(
            status,
            retry_after,
            json!({"error": {"message": format!("simulated error {}", status.as_u16()), "type": "server_error"}}),
        );
    }
    let dims = v["dimensions"].as_u64().unwrap_or(8).clamp(1, 4096) as usize;
    let tokens: usize = inputs
        .iter()
        .map(|t| t.split_whitespace().count().max(1))
        .sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t, dims)}))
        .collect();
    let out = json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    delayed_json(serde_json::to_vec(&out).expect("json"), 0, &d).await
}
