//! `/activity`: an account's spend, tokens and requests over 1 hour, 1 day, 1 month or 1 year,
//! by model or key, after signing in with an API key (kept in an HttpOnly, SameSite=Strict
//! cookie); `/activity.csv` exports the same. An inference key sees its own activity only, a
//! management key its whole account's.

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use super::{Params, param};
use crate::billing::KeyContext;
use crate::pipeline::Gateway;
use crate::rankings::activity::{self, Activity, GroupBy, Range};
use crate::rankings::human_tokens;
use crate::web::charts::{self, Series};
use crate::web::{cookie, render};

const COOKIE: &str = "llmux_key";

async fn signed_in(gw: &Gateway, headers: &HeaderMap) -> Option<Arc<KeyContext>> {
    let key = cookie(headers, COOKIE)?;
    gw.billing.authenticate(key).await.ok()
}

async fn load(
    gw: &Gateway,
    k: &KeyContext,
    q: &Params,
) -> Result<(Activity, &'static str, &'static str), String> {
    let range = Range::parse(param(q, "range").unwrap_or("1m")).map_err(|e| e.to_string())?;
    let by = GroupBy::parse(param(q, "by").unwrap_or("model")).map_err(|e| e.to_string())?;
    let key_only = (!k.key.management).then_some(k.key.hash.as_str());
    gw.meter.flush().await;
    let a = activity::activity(&gw.store, &gw.catalog, &k.account.id, key_only, range, by)
        .await
        .map_err(|e| e.to_string())?;
    let by_name = match by {
        GroupBy::Model => "model",
        GroupBy::Key => "key",
    };
    Ok((a, range.name(), by_name))
}

fn bucket_label(bucket: &str, start: i64) -> String {
    let iso = crate::clock::iso8601(start);
    match bucket {
        "hour" => iso[11..16].to_string(),
        _ => iso[5..10].to_string(),
    }
}

pub async fn page(State(gw): State<Arc<Gateway>>, headers: HeaderMap, q: Params) -> Response {
    let Some(k) = signed_in(&gw, &headers).await else {
        return render(
            "activity.html",
            StatusCode::OK,
            context! { nav => "activity", signed_in => false },
        );
    };
    let (a, range, by) = match load(&gw, &k, &q).await {
        Ok(x) => x,
        Err(e) => {
            return render(
                "activity.html",
                StatusCode::BAD_REQUEST,
                context! { nav => "activity", signed_in => false, error => e },
            );
        }
    };
    let labels: Vec<String> = a
        .buckets
        .iter()
        .map(|b| bucket_label(a.bucket, *b))
        .collect();
    let series = |f: &dyn Fn(&crate::metering::rollup::Sums) -> f64| -> Vec<Series> {
        a.groups
            .iter()
            .take(10)
            .map(|g| Series {
                name: g.name.clone(),
                values: g.series.iter().map(f).collect(),
            })
            .collect()
    };
    let spend_chart = charts::stacked_columns(
        &format!("Spend per {} (USD)", a.bucket),
        &labels,
        &series(&|s| s.cost as f64 / 1e12),
        &|v| format!("${v:.4}"),
    );
    let tokens_chart = charts::stacked_columns(
        &format!("Tokens per {}", a.bucket),
        &labels,
        &series(&|s| s.tokens() as f64),
        &|v| human_tokens(v as i64),
    );
    render(
        "activity.html",
        StatusCode::OK,
        context! {
            nav => "activity", signed_in => true,
            account => k.account.id.clone(),
            key_only => !k.key.management,
            key_name => k.key.name.clone(),
            range, by, a, spend_chart, tokens_chart,
        },
    )
}

pub async fn csv(State(gw): State<Arc<Gateway>>, headers: HeaderMap, q: Params) -> Response {
    let Some(k) = signed_in(&gw, &headers).await else {
        return (StatusCode::UNAUTHORIZED, "sign in at /activity first").into_response();
    };
    match load(&gw, &k, &q).await {
        Ok((a, range, by)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"llmux-activity-{range}-by-{by}.csv\""),
                ),
            ],
            activity::csv(&a),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct SignIn {
    key: String,
}

pub async fn sign_in(State(gw): State<Arc<Gateway>>, Form(f): Form<SignIn>) -> Response {
    let key = f.key.trim();
    match gw.billing.authenticate(key).await {
        Ok(_)
            if key
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b';' && b != b',') =>
        {
            let mut r = Redirect::to("/activity").into_response();
            let cookie =
                format!("{COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/; Max-Age=86400");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        _ => render(
            "activity.html",
            StatusCode::UNAUTHORIZED,
            context! { nav => "activity", signed_in => false, error => "That key is not valid." },
        ),
    }
}

pub async fn sign_out() -> Response {
    let mut r = Redirect::to("/activity").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("llmux_key=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}
