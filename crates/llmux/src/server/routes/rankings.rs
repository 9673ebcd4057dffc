//! Rankings and analytics over HTTP: llmux's own `GET /rankings`, OpenRouter's public
//! datasets, and price comparisons. All of it reads rollups; none of it waits on a write.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::pipeline::Gateway;
use crate::rankings::{QueryError, compare, datasets, table};
use crate::server::auth;
use crate::server::error::ApiError;

type Params = Query<HashMap<String, String>>;

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(m) => ApiError::bad_request(m),
            QueryError::NotFound(m) => ApiError::not_found(m),
            QueryError::Internal(e) => e.into(),
        }
    }
}

/// Answer from the rankings cache, else compute, answer and keep.
async fn cached<Fut>(gw: &Gateway, uri: &Uri, compute: Fut) -> Result<Response, ApiError>
where
    Fut: Future<Output = Result<Value, ApiError>>,
{
    // The pages share this cache: their keys are in a namespace of their own.
    let key = format!("api {uri}");
    let body = match gw.rankings_cache.get(&key) {
        Some(b) => b,
        None => {
            let v = compute.await?;
            let b = Bytes::from(serde_json::to_vec(&v).map_err(anyhow::Error::from)?);
            gw.rankings_cache.put(key, b.clone());
            b
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn get<'a>(q: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    q.get(key).map(String::as_str)
}

/// `GET /rankings?period=week&by=model|author|origin|provider|app&weeks=N&end_date=&source=&limit=`
pub async fn rankings(
    State(gw): State<Arc<Gateway>>,
    uri: Uri,
    Query(q): Params,
) -> Result<Response, ApiError> {
    cached(&gw, &uri, async {
        let query = table::Query::parse(
            get(&q, "period"),
            get(&q, "by"),
            get(&q, "weeks").or_else(|| get(&q, "periods")),
            get(&q, "end_date"),
            get(&q, "source"),
            get(&q, "limit"),
        )?;
        let r = table::rankings(&gw.store, &gw.catalog, &query).await?;
        Ok(json!({ "data": r }))
    })
    .await
}

/// `GET /datasets/rankings-daily?start_date&end_date&period=day|week|month`
pub async fn rankings_daily(
    State(gw): State<Arc<Gateway>>,
    uri: Uri,
    Query(q): Params,
) -> Result<Response, ApiError> {
    cached(&gw, &uri, async {
        let d = datasets::rankings_daily(
            &gw.store,
            &gw.catalog,
            get(&q, "start_date"),
            get(&q, "end_date"),
            get(&q, "period"),
            get(&q, "source"),
        )
        .await?;
        Ok(serde_json::to_value(d).map_err(anyhow::Error::from)?)
    })
    .await
}

/// `GET /datasets/app-rankings?sort=popular|trending&limit&offset&start_date&end_date`
pub async fn app_rankings(
    State(gw): State<Arc<Gateway>>,
    uri: Uri,
    Query(q): Params,
) -> Result<Response, ApiError> {
    cached(&gw, &uri, async {
        let d = datasets::app_rankings(
            &gw.store,
            get(&q, "sort"),
            get(&q, "start_date"),
            get(&q, "end_date"),
            get(&q, "limit"),
            get(&q, "offset"),
        )
        .await?;
        Ok(serde_json::to_value(d).map_err(anyhow::Error::from)?)
    })
    .await
}

/// `GET /compare?models=a,b,...`: prices and their ratios.
pub async fn compare(
    State(gw): State<Arc<Gateway>>,
    Query(q): Params,
) -> Result<Json<Value>, ApiError> {
    let ids = compare::parse_models(&gw.catalog, get(&q, "models"))?;
    Ok(Json(json!({ "data": compare::compare(&gw.catalog, &ids) })))
}

/// `GET /compare/what-if?models=b,c&period=week&end_date=&scope=account|gateway`: the
/// presented key's account usage (or the gateway's public traffic) repriced on `models`.
pub async fn what_if(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Json<Value>, ApiError> {
    let ids = compare::parse_models(&gw.catalog, get(&q, "models"))?;
    let scope = match get(&q, "scope").unwrap_or("account") {
        "gateway" => compare::Scope::Gateway,
        "account" => {
            let k = auth::any_key(&gw, &headers).await?;
            gw.meter.flush().await;
            compare::Scope::Account(k.account.id.clone())
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "scope: expected account or gateway, got {other:?}"
            )));
        }
    };
    let w = compare::what_if(
        &gw.store,
        &gw.catalog,
        scope,
        get(&q, "period"),
        get(&q, "end_date"),
        &ids,
    )
    .await?;
    Ok(Json(json!({ "data": w })))
}
