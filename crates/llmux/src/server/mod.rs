//! The HTTP server: every route, mounted under `/api/v1` (OpenRouter's path) and `/v1` (so
//! `base_url=http://host:port/v1` works for OpenAI SDK users), plus `/healthz`.

pub mod auth;
pub mod error;
pub(crate) mod poll_before_sleep;
pub(crate) mod routes;
pub mod workers;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{get, post};

use self::error::ApiError;
use crate::inbound;
use crate::pipeline::Gateway;

/// The API's routes under `prefix`.
fn api(prefix: &str) -> Router<Arc<Gateway>> {
    let p = |path: &str| format!("{prefix}{path}");
    Router::new()
        .route(
            &p("/chat/completions"),
            post(inbound::openai_chat::chat_completions),
        )
        .route(&p("/messages"), post(inbound::anthropic_messages::messages))
        .route(
            &p("/messages/count_tokens"),
            post(inbound::anthropic_messages::count_tokens),
        )
        .route(&p("/embeddings"), post(inbound::embeddings::embeddings))
        .route(&p("/embeddings/models"), get(inbound::embeddings::models))
        .route(&p("/models"), get(routes::models::list))
        .route(&p("/models/count"), get(routes::models::count))
        .route(&p("/models/{*rest}"), get(routes::models::endpoints))
        .route(&p("/model/{*rest}"), get(routes::models::one))
        .route(&p("/providers"), get(routes::models::providers))
        .route(&p("/generation"), get(routes::generation::get))
        .route(&p("/key"), get(routes::key::current))
        .route(
            &p("/keys"),
            get(routes::account::list).post(routes::account::create),
        )
        .route(
            &p("/keys/{hash}"),
            get(routes::account::get)
                .patch(routes::account::update)
                .delete(routes::account::delete),
        )
        .route(&p("/credits"), get(routes::account::credits))
        .route(&p("/activity"), get(routes::account::activity))
        .route(&p("/byok"), get(routes::account::byok_list))
        .route(
            &p("/byok/{provider}"),
            axum::routing::put(routes::account::byok_put).delete(routes::account::byok_delete),
        )
        .route(&p("/auth/key"), get(routes::key::current))
        .route(&p("/rankings"), get(routes::rankings::rankings))
        .route(
            &p("/datasets/rankings-daily"),
            get(routes::rankings::rankings_daily),
        )
        .route(
            &p("/datasets/app-rankings"),
            get(routes::rankings::app_rankings),
        )
        .route(&p("/compare"), get(routes::rankings::compare))
        .route(&p("/compare/what-if"), get(routes::rankings::what_if))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {method} {}", uri.path()))
}

pub fn router(gw: Arc<Gateway>) -> Router {
    // One route table for both prefixes rather than nested routers: a nested router rebuilds
    // every request's URI without its prefix and records where it was nested.
    Router::new()
        .merge(api("/api/v1"))
        .merge(api("/v1"))
        .route("/healthz", get(routes::health::healthz))
        .route("/metrics", get(routes::health::metrics))
        .merge(crate::web::routes())
        .fallback(not_found)
        .with_state(gw)
}
