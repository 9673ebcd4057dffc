//! The pages: rankings, the model catalog, a model, price comparison and an account's
//! activity. Server-rendered HTML (minijinja templates compiled into the binary) with SVG
//! charts drawn by `plotters`, readable without JavaScript. Every page reads rollups and the
//! catalog; the JSON behind each is under `/api/v1`.

pub mod charts;
mod pages;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::{Environment, Value};

use crate::pipeline::Gateway;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/rankings") }))
        .route("/rankings", get(pages::rankings::page))
        .route("/models", get(pages::models::list))
        .route("/models/{*id}", get(pages::models::one))
        .route("/compare", get(pages::compare::page))
        .route("/activity", get(pages::activity::page))
        .route("/activity.csv", get(pages::activity::csv))
        .route("/activity/sign-in", post(pages::activity::sign_in))
        .route("/activity/sign-out", post(pages::activity::sign_out))
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("macros.html", include_str!("templates/macros.html")),
            ("rankings.html", include_str!("templates/rankings.html")),
            ("models.html", include_str!("templates/models.html")),
            ("model.html", include_str!("templates/model.html")),
            ("compare.html", include_str!("templates/compare.html")),
            ("activity.html", include_str!("templates/activity.html")),
        ] {
            env.add_template(name, source).expect("templates compile");
        }
        env.add_filter("human", |v: Value| -> String {
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0);
            crate::rankings::human_tokens(n)
        });
        env.add_filter("pct", |v: f64| format!("{v:.2}%"));
        // "-0.5" → "-$0.5"
        env.add_filter("usd", |v: String| match v.strip_prefix('-') {
            Some(abs) => format!("-${abs}"),
            None => format!("${v}"),
        });
        env.add_filter("author", |v: String| {
            crate::rankings::author_of(&v).to_string()
        });
        env.add_filter("model_path", |v: String| {
            v.split(':').next().unwrap_or_default().to_string()
        });
        env
    })
}

/// Render a template; a template error is logged and answered with a 500.
pub(crate) fn render(name: &str, status: StatusCode, ctx: Value) -> Response {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("rendering {name}: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
