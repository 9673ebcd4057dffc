//! The HTTP server: every route, mounted under `/api/v1` (OpenRouter's path) and `/v1` (so
//! `base_url=http://host:port/v1` works for OpenAI SDK users), plus `/healthz`.

pub mod auth;
pub mod error;
pub(crate) mod routes;
pub mod workers;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{get, post};

use self::error::ApiError;
use crate::inbound;
use crate::pipeline::Gateway;

fn api() -> Router<Arc<Gateway>> {
    Router::new()
        .route(
            "/chat/completions",
            post(inbound::openai_chat::chat_completions),
        )
        .route("/messages", post(inbound::anthropic_messages::messages))
        .route(
            "/messages/count_tokens",
            post(inbound::anthropic_messages::count_tokens),
        )
        .route("/embeddings", post(inbound::embeddings::embeddings))
        .route("/embeddings/models", get(inbound::embeddings::models))
        .route("/models", get(routes::models::list))
        .route("/models/count", get(routes::models::count))
        .route("/models/{*rest}", get(routes::models::endpoints))
        .route("/model/{*rest}", get(routes::models::one))
        .route("/providers", get(routes::models::providers))
        .route("/generation", get(routes::generation::get))
        .route("/key", get(routes::key::current))
        .route(
            "/keys",
            get(routes::account::list).post(routes::account::create),
        )
        .route(
            "/keys/{hash}",
            get(routes::account::get)
                .patch(routes::account::update)
                .delete(routes::account::delete),
        )
        .route("/credits", get(routes::account::credits))
        .route("/activity", get(routes::account::activity))
        .route("/byok", get(routes::account::byok_list))
        .route(
            "/byok/{provider}",
            axum::routing::put(routes::account::byok_put).delete(routes::account::byok_delete),
        )
        .route("/auth/key", get(routes::key::current))
        .route("/rankings", get(routes::rankings::rankings))
        .route(
            "/datasets/rankings-daily",
            get(routes::rankings::rankings_daily),
        )
        .route(
            "/datasets/app-rankings",
            get(routes::rankings::app_rankings),
        )
        .route("/compare", get(routes::rankings::compare))
        .route("/compare/what-if", get(routes::rankings::what_if))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("Not found: {method} {}", uri.path()))
}

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .nest("/api/v1", api())
        .nest("/v1", api())
        .route("/healthz", get(routes::health::healthz))
        .route("/metrics", get(routes::health::metrics))
        .merge(crate::web::routes())
        .fallback(not_found)
        .with_state(gw)
}
