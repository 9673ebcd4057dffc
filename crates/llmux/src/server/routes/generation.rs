//! `GET /generation?id=gen-...`: one generation's record, in OpenRouter's shape.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::metering::GenerationRecord;
use crate::pipeline::Gateway;
use crate::server::auth;
use crate::server::error::ApiError;

pub fn generation_json(g: &GenerationRecord) -> Value {
    let responses: Vec<Value> = g
        .provider_responses
        .iter()
        .map(|r| {
            json!({
                "provider_name": r.provider,
                "endpoint_id": format!("{}:{}", r.provider, r.endpoint),
                "status": r.status,
                "latency": r.latency_ms,
                "error": r.error,
                "is_byok": g.is_byok,
            })
        })
        .collect();
    let u = &g.usage;
    json!({
        "id": g.id,
        "upstream_id": g.upstream_id,
        "total_cost": g.cost.to_f64(),
        "total_cost_usd": g.cost.to_string(),
        "cache_discount": null,
        "upstream_inference_cost": g.upstream_cost.as_deref().and_then(|c| c.parse::<f64>().ok()),
        "created_at": crate::clock::iso8601(g.created_at_ms),
        "model": g.model.clone().unwrap_or_else(|| g.requested_model.clone()),
        "requested_model": g.requested_model,
        "app_id": null,
        "streamed": g.streamed,
        "cancelled": g.cancelled,
        "provider_name": g.provider_name,
        "provider": g.provider,
        "upstream_model": g.upstream_model,
        "latency": g.latency_ms,
        "time_to_first_token": g.ttft_ms,
        "moderation_latency": null,
        "generation_time": g.generation_ms,
        "finish_reason": g.finish_reason,
        "native_finish_reason": g.native_finish_reason,
        "tokens_prompt": u.prompt_tokens,
        "tokens_completion": u.completion_tokens,
        "native_tokens_prompt": u.prompt_tokens,
        "native_tokens_completion": u.completion_tokens,
        "native_tokens_completion_images": null,
        "native_tokens_reasoning": u.reasoning_tokens,
        "native_tokens_cached": u.cached_tokens,
        "native_tokens_cache_write": u.cache_write_tokens,
        "usage_estimated": g.usage_estimated,
        "num_media_prompt": null,
        "num_input_audio_prompt": null,
        "num_media_completion": null,
        "num_search_results": null,
        "num_fetches": null,
        "origin": g.app_referer.clone().unwrap_or_default(),
        "http_referer": g.app_referer,
        "app_title": g.app_title,
        "usage": g.cost.to_f64(),
        "is_byok": g.is_byok,
        "api_type": g.api_type,
        "external_user": g.external_user,
        "user_agent": g.user_agent,
        "session_id": g.session_id,
        "router": null,
        "provider_responses": responses,
        "data_region": "global",
        "preset_id": null,
        "service_tier": null,
        "web_search_engine": null,
        "workspace_id": null,
        "status": g.status,
        "error": g.error,
    })
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let key = auth::any_key(&gw, &headers).await?;
    let id = q
        .get("id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("id: required (a generation id, gen-...)"))?;
    // Records are written in batches; make sure everything answered so far is stored.
    gw.meter.flush().await;
    let g = gw.store.generation(id).await?;
    match g {
        Some(g) if g.account_id.as_deref() == Some(key.account.id.as_str()) => {
            Ok(Json(json!({"data": generation_json(&g)})))
        }
        _ => Err(ApiError::not_found(format!("Generation {id} not found"))),
    }
}
