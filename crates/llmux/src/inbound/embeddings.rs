//! `POST /api/v1/embeddings` (OpenAI's format, for OpenAI-compatible upstreams) and
//! `GET /api/v1/embeddings/models`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::pipeline::{self, Gateway, RequestMeta};
use crate::server::auth;
use crate::server::error::ApiError;

/// A checked embeddings request: the body as sent (forwarded with the model replaced), and the
/// texts it embeds (for estimates).
pub struct EmbeddingsRequest {
    pub model: String,
    pub body: Map<String, Value>,
    pub texts: Vec<String>,
    pub items: usize,
}

fn parse(bytes: &[u8]) -> Result<EmbeddingsRequest, ApiError> {
    let v: Value = llmux_protocol::error::parse_json(bytes).map_err(ApiError::bad_request)?;
    let Value::Object(mut body) = v else {
        return Err(ApiError::bad_request(
            "expected an embeddings request object",
        ));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err(ApiError::bad_request("model: expected a model id")),
        None => return Err(ApiError::bad_request("model: required")),
    };
    let bad =
        || ApiError::bad_request("input: expected a string, an array of strings, or token arrays");
    let (texts, items) = match body.get("input") {
        Some(Value::String(s)) => (vec![s.clone()], 1),
        Some(Value::Array(a)) if !a.is_empty() => {
            let mut texts = Vec::new();
            for x in a {
                match x {
                    Value::String(s) => texts.push(s.clone()),
                    Value::Number(_) => {}
                    Value::Array(t) if t.iter().all(Value::is_number) => {}
                    _ => return Err(bad()),
                }
            }
            (texts, a.len())
        }
        Some(Value::Array(_)) => return Err(ApiError::bad_request("input: must not be empty")),
        Some(_) => return Err(bad()),
        None => return Err(ApiError::bad_request("input: required")),
    };
    // Routing preferences are llmux's, not the upstream's.
    body.remove("provider");
    body.remove("models");
    Ok(EmbeddingsRequest {
        model,
        body,
        texts,
        items,
    })
}

pub async fn embeddings(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let (headers, body) = auth::headers_and_body(request);
    let key = match auth::inference_key(&gw, &headers).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let meta = RequestMeta::from_headers(&headers);
    let bytes = match auth::read_body(body, &headers, gw.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return pipeline::reject(&gw, &key, &meta, "embeddings", None, e).into_response(),
    };
    let req = match parse(&bytes) {
        Ok(r) => r,
        Err(e) => return pipeline::reject(&gw, &key, &meta, "embeddings", None, e).into_response(),
    };
    pipeline::embeddings::execute(gw, key, req, meta).await
}

/// `GET /embeddings/models`: models with an endpoint whose output is embeddings.
pub async fn models(
    State(gw): State<Arc<Gateway>>,
    Query(_q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let data: Vec<Value> = gw
        .catalog
        .routable_models()
        .filter(|m| {
            m.architecture
                .output_modalities
                .iter()
                .any(|o| o == "embeddings")
        })
        .map(|m| crate::server::routes::models::model_json(&gw.catalog, m))
        .collect();
    let n = data.len();
    Json(json!({"data": data, "links": {"next": null}, "total_count": n}))
}
