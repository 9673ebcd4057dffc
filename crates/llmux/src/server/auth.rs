//! Authentication and bounded request bodies.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;

use super::error::ApiError;
use crate::billing::{AuthError, KeyContext};
use crate::pipeline::Gateway;

/// The key a request presents: `Authorization: Bearer KEY`, or `x-api-key: KEY` (the
/// Anthropic SDK's header).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let key = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !key.is_empty() {
            return Some(key);
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::ManagementKey => ApiError::forbidden(e.to_string()),
        AuthError::Storage(msg) => {
            tracing::error!("key lookup failed: {msg}");
            ApiError::unavailable("Key lookup is temporarily unavailable")
        }
        _ => ApiError::unauthorized(e.to_string()),
    }
}

/// Any valid key (inference or management).
pub async fn any_key(gw: &Gateway, headers: &HeaderMap) -> Result<Arc<KeyContext>, ApiError> {
    let presented = presented_key(headers).ok_or_else(|| auth_error(AuthError::Missing))?;
    gw.billing.authenticate(presented).await.map_err(auth_error)
}

/// A key allowed to call models.
pub async fn inference_key(gw: &Gateway, headers: &HeaderMap) -> Result<Arc<KeyContext>, ApiError> {
    let k = any_key(gw, headers).await?;
    if k.key.management {
        return Err(auth_error(AuthError::ManagementKey));
    }
    Ok(k)
}

/// A request's headers and body. Inference handlers take the request whole and split it
/// here: axum's `HeaderMap` extractor clones the headers (about 1,000 instructions and two
/// allocations a request, for a map the request already owns).
pub fn headers_and_body(request: Request) -> (HeaderMap, Body) {
    let (parts, body) = request.into_parts();
    (parts.headers, body)
}

/// Read a request body, refusing (413) anything over `limit` bytes without buffering it.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(ApiError::payload_too_large(limit));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::payload_too_large(limit))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "Could not read the request body: {e}"
        ))),
    }
}
