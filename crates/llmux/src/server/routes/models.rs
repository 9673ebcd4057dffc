//! The catalog API: `GET /models`, `/models/count`, `/models/{author}/{slug}/endpoints`,
//! `/model/{author}/{slug}`, `/providers`, in OpenRouter's shapes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use crate::catalog::{Catalog, Endpoint, Model, Pricing};
use crate::pipeline::Gateway;
use crate::server::error::ApiError;

/// OpenRouter's pricing object: per-unit USD as decimal strings; optional prices only when set.
pub fn pricing_json(p: &Pricing) -> Value {
    if p.variable {
        return json!({"prompt": "-1", "completion": "-1"});
    }
    let mut v = json!({
        "prompt": p.prompt.per_unit_string(),
        "completion": p.completion.per_unit_string(),
    });
    let mut opt = |k: &str, price: Option<crate::money::Price>| {
        if let Some(price) = price.filter(|x| !x.is_zero()) {
            v[k] = price.per_unit_string().into();
        }
    };
    opt("request", Some(p.request));
    opt("image", Some(p.image));
    opt("internal_reasoning", p.internal_reasoning);
    opt("input_cache_read", p.input_cache_read);
    opt("input_cache_write", p.input_cache_write);
    v
}

fn architecture_json(m: &Model) -> Value {
    let a = &m.architecture;
    json!({
        "modality": a.modality,
        "input_modalities": a.input_modalities,
        "output_modalities": a.output_modalities,
        "tokenizer": a.tokenizer,
        "instruct_type": a.instruct_type,
    })
}

pub fn model_json(c: &Catalog, m: &Model) -> Value {
    let endpoints = c.endpoints(&m.id);
    let top = endpoints
        .iter()
        .max_by_key(|e| e.context_length.unwrap_or(0))
        .map(|e| (e.context_length, e.max_completion_tokens))
        .unwrap_or((
            m.top_provider.context_length,
            m.top_provider.max_completion_tokens,
        ));
    let mut v = json!({
        "id": m.id,
        "canonical_slug": m.canonical_slug,
        "hugging_face_id": m.hugging_face_id.clone().unwrap_or_default(),
        "name": m.name,
        "created": m.created,
        "description": m.description,
        "context_length": m.context_length,
        "architecture": architecture_json(m),
        "pricing": pricing_json(c.listed_pricing(m)),
        "top_provider": {
            "context_length": top.0,
            "max_completion_tokens": top.1,
            "is_moderated": m.top_provider.is_moderated,
        },
        "per_request_limits": null,
        "supported_parameters": m.supported_parameters,
        "default_parameters": if m.default_parameters.is_null() { json!({}) } else { m.default_parameters.clone() },
        "supported_voices": null,
        "knowledge_cutoff": m.knowledge_cutoff,
        "expiration_date": m.expiration_date,
        "links": {"details": format!("/api/v1/models/{}/endpoints", m.id)},
        "origin_country": m.origin,
    });
    if !endpoints.is_empty() && endpoints.iter().all(|e| e.provider.simulated) {
        v["simulated"] = true.into();
    }
    v
}

fn list_filter<'a>(q: &'a HashMap<String, String>, key: &str) -> Vec<&'a str> {
    q.get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn matching<'a>(c: &'a Catalog, q: &HashMap<String, String>) -> Vec<&'a Arc<Model>> {
    let text = q
        .get("q")
        .map(|s| s.to_lowercase())
        .filter(|s| !s.is_empty());
    let params = list_filter(q, "supported_parameters");
    let inputs = list_filter(q, "input_modalities");
    let outputs = list_filter(q, "output_modalities");
    c.routable_models()
        .filter(|m| {
            !m.is_embedding_model()
                && text.as_ref().is_none_or(|t| {
                    m.id.to_lowercase().contains(t) || m.name.to_lowercase().contains(t)
                })
                && params
                    .iter()
                    .all(|p| m.supported_parameters.iter().any(|x| x == p))
                && inputs
                    .iter()
                    .all(|i| m.architecture.input_modalities.iter().any(|x| x == i))
                && outputs
                    .iter()
                    .all(|o| m.architecture.output_modalities.iter().any(|x| x == o))
        })
        .collect()
}

fn number(q: &HashMap<String, String>, key: &str, default: usize) -> Result<usize, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!("{key}: expected a non-negative integer, got {v:?}"))
        }),
    }
}

/// `GET /models`: the models llmux can route to (those with at least one endpoint).
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let all = matching(&gw.catalog, &q);
    let offset = number(&q, "offset", 0)?;
    let limit = number(&q, "limit", usize::MAX)?.max(1);
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|m| model_json(&gw.catalog, m))
        .collect();
    let next = (offset.saturating_add(page.len()) < all.len()).then(|| {
        format!(
            "/api/v1/models?offset={}&limit={limit}",
            offset + page.len()
        )
    });
    Ok(Json(
        json!({"data": page, "links": {"next": next}, "total_count": all.len()}),
    ))
}

pub async fn count(
    State(gw): State<Arc<Gateway>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    Json(json!({"data": {"count": matching(&gw.catalog, &q).len()}}))
}

fn model_from_path<'a>(c: &'a Catalog, id: &str) -> Result<&'a Arc<Model>, ApiError> {
    crate::router::resolve_model(c, id)
        .ok_or_else(|| ApiError::not_found(format!("Model {id} not found")))
}

/// `GET /model/{author}/{slug}`.
pub async fn one(
    State(gw): State<Arc<Gateway>>,
    Path(rest): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = model_from_path(&gw.catalog, &rest)?;
    Ok(Json(json!({"data": model_json(&gw.catalog, m)})))
}

/// An endpoint in OpenRouter's shape, with its live health.
pub fn endpoint_json(e: &Endpoint, h: &crate::router::health::Snapshot) -> Value {
    use crate::router::health::Circuit;
    let status = match (h.circuit, h.stable) {
        (Circuit::Closed, true) => 0,
        (Circuit::Closed, false) => -1,
        (Circuit::HalfOpen, _) => -2,
        (Circuit::Open, _) => -5,
    };
    json!({
        "name": e.display_name(),
        "model_id": e.model_id,
        "model_name": e.model_name,
        "context_length": e.context_length.unwrap_or(0),
        "pricing": pricing_json(&e.pricing),
        "provider_name": e.provider.name,
        "tag": e.provider.slug,
        "quantization": e.quantization.clone().unwrap_or_else(|| "unknown".into()),
        "max_completion_tokens": e.max_completion_tokens,
        "max_prompt_tokens": e.max_prompt_tokens,
        "supported_parameters": e.supported_parameters,
        "status": status,
        "uptime_last_5m": h.uptime_5m,
        "uptime_last_30m": h.uptime_30m,
        "uptime_last_1d": h.uptime_1d,
        "latency_last_30m": h.latency_30m,
        "throughput_last_30m": h.throughput_30m,
        "circuit": h.circuit,
        "supports_implicit_caching": e.pricing.input_cache_read.is_some(),
        "service_tier": null,
        "native_tools": {},
        "supports_diarization": false,
        "supports_tool_choice": {"auto": true, "none": true, "required": true, "function": true},
        "simulated": e.provider.simulated,
    })
}

/// `GET /models/{author}/{slug}/endpoints`.
pub async fn endpoints(
    State(gw): State<Arc<Gateway>>,
    Path(rest): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = rest
        .strip_suffix("/endpoints")
        .ok_or_else(|| ApiError::not_found(format!("Not found: /models/{rest}")))?;
    let m = model_from_path(&gw.catalog, id)?;
    let eps: Vec<Value> = gw
        .catalog
        .endpoints(&m.id)
        .iter()
        .map(|e| endpoint_json(e, &gw.router.health.snapshot(&e.provider.slug, &m.id)))
        .collect();
    Ok(Json(json!({"data": {
        "id": m.id,
        "name": m.name,
        "created": m.created,
        "description": m.description,
        "architecture": architecture_json(m),
        "endpoints": eps,
    }})))
}

/// `GET /providers`.
pub async fn providers(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let data: Vec<Value> = gw
        .catalog
        .providers()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "slug": p.slug,
                "privacy_policy_url": null,
                "terms_of_service_url": null,
                "status_page_url": null,
                "api": p.api.as_str(),
                "simulated": p.simulated,
            })
        })
        .collect();
    Json(json!({"data": data}))
}
