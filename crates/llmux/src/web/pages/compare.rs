//! `/compare`: models' prices side by side with their ratios, and what the signed-in
//! account's usage (else the gateway's public traffic) would have cost on each.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;

use super::{Params, param};
use crate::pipeline::Gateway;
use crate::rankings::compare::{self, Scope};
use crate::web::charts;
use crate::web::{cookie, render};

const EXAMPLE: &str = "anthropic/claude-opus-4.6,minimax/minimax-m2.5";

pub async fn page(State(gw): State<Arc<Gateway>>, headers: HeaderMap, q: Params) -> Response {
    let models_param = param(&q, "models").unwrap_or(EXAMPLE).to_string();
    let period = param(&q, "period").unwrap_or("week");
    let end_date = param(&q, "end_date");
    let ids = match compare::parse_models(&gw.catalog, Some(&models_param)) {
        Ok(ids) => ids,
        Err(e) => {
            return render(
                "compare.html",
                StatusCode::BAD_REQUEST,
                context! { nav => "compare", models_param, period, end_date => end_date.unwrap_or_default(), error => e.to_string() },
            );
        }
    };
    let cmp = compare::compare(&gw.catalog, &ids);
    let account = match cookie(&headers, "llmux_key") {
        Some(k) => gw.billing.authenticate(k).await.ok(),
        None => None,
    };
    let (scope, who) = match &account {
        Some(k) => (
            Scope::Account(k.account.id.clone()),
            format!("Your account ({})", k.account.id),
        ),
        None => (Scope::Gateway, "This gateway's public traffic".to_string()),
    };
    let (whatif, error) =
        match compare::what_if(&gw.store, &gw.catalog, scope, Some(period), end_date, &ids).await {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e.to_string())),
        };
    let whatif_chart = whatif.as_ref().map(|w| {
        let mut items = vec![(
            "Actual".to_string(),
            w.actual_cost.parse::<f64>().unwrap_or(0.0),
        )];
        items.extend(
            w.alternatives
                .iter()
                .map(|a| (a.name.clone(), a.cost.parse::<f64>().unwrap_or(0.0))),
        );
        charts::bars("The same usage, priced on each model (USD)", &items, &|v| {
            format!("${v:.6}")
        })
    });
    render(
        "compare.html",
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        context! {
            nav => "compare", models_param, period,
            end_date => end_date.unwrap_or_default(),
            cmp, whatif, whatif_chart, whatif_who => who, error,
        },
    )
}
