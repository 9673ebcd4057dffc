//! OpenRouter's account API: `GET/POST /keys`, `GET/PATCH/DELETE /keys/{hash}` (management
//! keys), `GET /credits`, `GET /activity`; and llmux's `GET/PUT/DELETE /byok/{provider}` for
//! an account's own provider keys.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::key::KeyUsageReport;
use crate::billing::KeyContext;
use crate::billing::admin::{self, KeySpec};
use crate::billing::byok::ByokMode;
use crate::clock::DAY_MS;
use crate::money::Money;
use crate::pipeline::Gateway;
use crate::server::auth;
use crate::server::error::ApiError;
use crate::storage::{KeyRow, KeyUpdate};

/// A key as OpenRouter's key endpoints show it (never the key itself).
async fn key_object(gw: &Gateway, k: &KeyRow) -> Result<Value, ApiError> {
    let report = KeyUsageReport::load(gw, k).await?;
    let mut v = json!({
        "hash": k.hash,
        "name": k.name,
        "label": k.label,
        "disabled": k.disabled,
        "limit": k.limit.map(Money::to_f64),
        "limit_remaining": report.limit_remaining(k).map(Money::to_f64),
        "limit_reset": k.limit_reset,
        "include_byok_in_limit": k.include_byok_in_limit,
        "created_at": crate::clock::iso8601(k.created_at),
        "updated_at": crate::clock::iso8601(k.updated_at),
        "last_used_at": null,
        "expires_at": k.expires_at.map(crate::clock::iso8601),
        "creator_user_id": null,
        "external_user": null,
        "workspace_id": "default",
        "is_management_key": k.management,
        "rpm": k.rpm,
        "tpm": k.tpm,
    });
    report.fields(&mut v);
    Ok(v)
}

async fn management(gw: &Gateway, headers: &HeaderMap) -> Result<Arc<KeyContext>, ApiError> {
    let k = auth::any_key(gw, headers).await?;
    if !k.key.management {
        return Err(ApiError::forbidden(
            "Only management keys can manage API keys",
        ));
    }
    Ok(k)
}

/// A key of the caller's account (404 otherwise, deleted keys included).
async fn own_key(gw: &Gateway, account: &str, hash: &str) -> Result<KeyRow, ApiError> {
    match gw.store.key(hash).await? {
        Some(k) if k.account_id == account && k.deleted_at.is_none() => Ok(k),
        _ => Err(ApiError::not_found(format!("Key {hash} not found"))),
    }
}

async fn json_body(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<Map<String, Value>, ApiError> {
    let bytes = auth::read_body(body, headers, gw.config.max_body_bytes).await?;
    match llmux_protocol::error::parse_json::<Value>(&bytes).map_err(ApiError::bad_request)? {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::bad_request("expected a JSON object")),
    }
}

/// A dollar amount from JSON: a non-negative number (or numeric string), exact.
fn money_field(o: &Map<String, Value>, key: &str) -> Result<Option<Option<Money>>, ApiError> {
    let text = match o.get(key) {
        None => return Ok(None),
        Some(Value::Null) => return Ok(Some(None)),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{key}: expected a number of USD"
            )));
        }
    };
    let m = Money::parse_usd(&text).map_err(|e| ApiError::bad_request(format!("{key}: {e}")))?;
    if m.is_negative() {
        return Err(ApiError::bad_request(format!(
            "{key}: must not be negative"
        )));
    }
    Ok(Some(Some(m)))
}

fn reset_field(o: &Map<String, Value>) -> Result<Option<Option<String>>, ApiError> {
    match o.get("limit_reset") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if matches!(s.as_str(), "daily" | "weekly" | "monthly") => {
            Ok(Some(Some(s.clone())))
        }
        Some(_) => Err(ApiError::bad_request(
            "limit_reset: expected daily, weekly, monthly or null",
        )),
    }
}

fn bool_field(o: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key}: expected true or false"
        ))),
    }
}

fn time_field(o: &Map<String, Value>, key: &str) -> Result<Option<Option<i64>>, ApiError> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(Some(t.timestamp_millis())))
            .map_err(|_| ApiError::bad_request(format!("{key}: expected an ISO 8601 date-time"))),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key}: expected an ISO 8601 date-time"
        ))),
    }
}

fn count_field(o: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= i64::MAX as u64)
            .map(|n| Some(n as i64))
            .ok_or_else(|| {
                ApiError::bad_request(format!("{key}: expected a non-negative integer"))
            }),
    }
}

/// `GET /keys`
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let me = management(&gw, &headers).await?;
    let include_disabled = q.get("include_disabled").is_some_and(|v| v == "true");
    let offset: usize = match q.get("offset") {
        Some(o) => o
            .parse()
            .map_err(|_| ApiError::bad_request("offset: expected a non-negative integer"))?,
        None => 0,
    };
    gw.meter.flush().await;
    let mut data = Vec::new();
    for k in gw.store.keys(Some(&me.account.id)).await? {
        if k.management || (k.disabled && !include_disabled) {
            continue;
        }
        data.push(key_object(&gw, &k).await?);
    }
    Ok(Json(
        json!({"data": data.into_iter().skip(offset).take(100).collect::<Vec<_>>()}),
    ))
}

/// `POST /keys`: 201 with the new key, shown once.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let me = management(&gw, &headers).await?;
    let o = json_body(&gw, &headers, body).await?;
    let name = match o.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(ApiError::bad_request("name: required (a non-empty string)")),
    };
    let spec = KeySpec {
        name,
        account: Some(me.account.id.clone()),
        limit: money_field(&o, "limit")?.flatten(),
        limit_reset: reset_field(&o)?.flatten(),
        include_byok_in_limit: bool_field(&o, "include_byok_in_limit")?.unwrap_or(false),
        expires_at: time_field(&o, "expires_at")?.flatten(),
        rpm: count_field(&o, "rpm")?,
        tpm: count_field(&o, "tpm")?,
        ..Default::default()
    };
    let created = admin::create_key(&gw.store, &spec, gw.billing.node())
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let data = key_object(&gw, &created.row).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": data, "key": created.key})),
    )
        .into_response())
}

/// `GET /keys/{hash}`
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let me = management(&gw, &headers).await?;
    let k = own_key(&gw, &me.account.id, &hash).await?;
    gw.meter.flush().await;
    Ok(Json(json!({"data": key_object(&gw, &k).await?})))
}

/// `PATCH /keys/{hash}`: name, disabled, limit, limit_reset, include_byok_in_limit (and
/// llmux's expires_at).
pub async fn update(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let me = management(&gw, &headers).await?;
    let k = own_key(&gw, &me.account.id, &hash).await?;
    let o = json_body(&gw, &headers, body).await?;
    let name = match o.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("name: expected a non-empty string")),
    };
    let update = KeyUpdate {
        name,
        disabled: bool_field(&o, "disabled")?,
        limit: money_field(&o, "limit")?,
        limit_reset: reset_field(&o)?,
        include_byok_in_limit: bool_field(&o, "include_byok_in_limit")?,
        expires_at: time_field(&o, "expires_at")?,
    };
    let row = gw
        .store
        .update_key(&k.hash, &update)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Key {hash} not found")))?;
    gw.billing.refresh_key(&row.hash).await?;
    gw.meter.flush().await;
    Ok(Json(json!({"data": key_object(&gw, &row).await?})))
}

/// `DELETE /keys/{hash}`: 200 `{"deleted": true}`.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let me = management(&gw, &headers).await?;
    let k = own_key(&gw, &me.account.id, &hash).await?;
    if k.hash == me.key.hash {
        return Err(ApiError::bad_request(
            "a management key cannot delete itself",
        ));
    }
    gw.store.delete_key(&k.hash).await?;
    gw.billing.refresh_key(&k.hash).await?;
    Ok(Json(json!({"deleted": true})))
}

/// `GET /credits`: what the key's account was credited and what it used.
pub async fn credits(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let k = auth::any_key(&gw, &headers).await?;
    gw.meter.flush().await;
    let (credited, used) = gw.store.credit_totals(&k.account.id).await?;
    Ok(Json(json!({"data": {
        "total_credits": credited.to_f64(),
        "total_usage": used.to_f64(),
        "balance": credited.saturating_sub(used).to_string(),
    }})))
}

/// `GET /activity?date=YYYY-MM-DD&api_key_hash=...`: per day, model and provider over the last
/// 30 completed UTC days (or one of them). A management key sees its account; an inference
/// key sees itself.
pub async fn activity(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let k = auth::any_key(&gw, &headers).await?;
    let today = crate::clock::now_ms().div_euclid(DAY_MS);
    let (since, until) = match q.get("date") {
        Some(d) => {
            let date = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::bad_request("date: expected YYYY-MM-DD"))?;
            let day = date
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc()
                .timestamp_millis()
                / DAY_MS;
            if day >= today || day < today - 30 {
                return Err(ApiError::bad_request(
                    "date: must be one of the last 30 completed UTC days",
                ));
            }
            (day * DAY_MS, (day + 1) * DAY_MS)
        }
        None => ((today - 30) * DAY_MS, today * DAY_MS),
    };
    let key_filter = match (k.key.management, q.get("api_key_hash")) {
        (true, Some(h)) => {
            own_key(&gw, &k.account.id, h).await?;
            Some(h.clone())
        }
        (true, None) => None,
        (false, Some(h)) if *h != k.key.hash => {
            return Err(ApiError::forbidden(
                "an inference key can only see its own activity",
            ));
        }
        (false, _) => Some(k.key.hash.clone()),
    };
    gw.meter.flush().await;
    let rows = gw
        .store
        .account_buckets(
            &k.account.id,
            key_filter.as_deref(),
            crate::metering::rollup::Period::Day,
            since,
            until,
        )
        .await?;
    // One row per day, model and provider (keys summed unless one was asked for).
    let mut merged: std::collections::BTreeMap<
        (i64, String, String),
        crate::metering::rollup::Sums,
    > = std::collections::BTreeMap::new();
    for r in rows.into_iter().filter(|r| !r.model.is_empty()) {
        merged
            .entry((r.start, r.model, r.provider))
            .or_default()
            .add(&r.sums);
    }
    let data: Vec<Value> = merged
        .iter()
        .map(|((day, model, provider), s)| {
            let provider_name = gw
                .catalog
                .provider(provider)
                .map_or(provider.as_str(), |p| p.name.as_str());
            json!({
                "date": crate::metering::rollup::date_string(*day),
                "model": model,
                "model_permaslug": crate::rankings::datasets::permaslug(&gw.catalog, model),
                "endpoint_id": format!("{provider}:{model}"),
                "provider_name": provider_name,
                "usage": Money(s.cost).to_f64(),
                "byok_usage_inference": Money(s.byok_usage).to_f64(),
                "requests": s.requests,
                "prompt_tokens": s.prompt,
                "completion_tokens": s.completion,
                "reasoning_tokens": s.reasoning,
                "cached_tokens": s.cached,
            })
        })
        .collect();
    Ok(Json(json!({"data": data})))
}

/// `GET /byok`: the account's own provider keys (never the keys themselves).
pub async fn byok_list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let me = management(&gw, &headers).await?;
    let rows = gw.store.byok_keys(&me.account.id).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"provider": r.provider, "mode": r.mode,
                   "created_at": crate::clock::iso8601(r.created_at), "updated_at": crate::clock::iso8601(r.updated_at)})
        })
        .collect();
    Ok(Json(json!({"data": data})))
}

/// `PUT /byok/{provider}` `{"key": "...", "mode": "prioritized"|"fallback"}`.
pub async fn byok_put(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let me = management(&gw, &headers).await?;
    let o = json_body(&gw, &headers, body).await?;
    let secret = match o.get("key") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            return Err(ApiError::bad_request(
                "key: required (the provider API key)",
            ));
        }
    };
    let mode = match o.get("mode") {
        None | Some(Value::Null) => ByokMode::Prioritized,
        Some(Value::String(s)) => ByokMode::parse(s)
            .ok_or_else(|| ApiError::bad_request("mode: expected prioritized or fallback"))?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "mode: expected prioritized or fallback",
            ));
        }
    };
    admin::set_byok(
        &gw.store,
        gw.billing.sealer(),
        &gw.catalog,
        &me.account.id,
        &provider,
        &secret,
        mode,
    )
    .await
    .map_err(|e| match e {
        admin::ByokError::Unavailable => ApiError::unavailable(e.to_string()),
        admin::ByokError::UnknownProvider(_) => ApiError::not_found(e.to_string()),
        admin::ByokError::Storage(err) => ApiError::from(err),
    })?;
    gw.billing.refresh_byok(&me.account.id).await?;
    Ok(Json(
        json!({"data": {"provider": provider, "mode": mode.as_str()}}),
    ))
}

/// `DELETE /byok/{provider}`
pub async fn byok_delete(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(provider): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let me = management(&gw, &headers).await?;
    if !gw.store.delete_byok(&me.account.id, &provider).await? {
        return Err(ApiError::not_found(format!(
            "No key for provider {provider}"
        )));
    }
    gw.billing.refresh_byok(&me.account.id).await?;
    Ok(Json(json!({"deleted": true})))
}
