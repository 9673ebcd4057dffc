//! `/rankings`: weekly tokens by model (stacked), share by author, tokens by country of origin
//! over time, top apps and a growth table, for llmux's traffic or an imported source.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;

use super::{Params, param};
use crate::pipeline::Gateway;
use crate::rankings::table::{self, By, Rankings};
use crate::rankings::{QueryError, datasets, human_tokens};
use crate::web::charts::{self, Series};
use crate::web::render;

/// Models drawn in the stacked chart; the rest is one "Other" band.
const CHART_MODELS: usize = 9;

pub async fn page(State(gw): State<Arc<Gateway>>, uri: Uri, q: Params) -> Response {
    // The JSON API shares this cache (and `/rankings` is a path of both): a namespace of its own.
    let key = format!("page {uri}");
    if let Some(html) = gw.rankings_cache.get(&key) {
        return Html(html).into_response();
    }
    let page = render_page(&gw, q).await;
    if page.status() == StatusCode::OK {
        let (parts, body) = page.into_parts();
        return match axum::body::to_bytes(body, usize::MAX).await {
            Ok(html) => {
                gw.rankings_cache.put(key, html.clone());
                Response::from_parts(parts, axum::body::Body::from(html))
            }
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
    }
    page
}

async fn render_page(gw: &Arc<Gateway>, q: Params) -> Response {
    let period = param(&q, "period").unwrap_or("week");
    let weeks = param(&q, "weeks").unwrap_or("8");
    let end_date = param(&q, "end_date");
    let source = param(&q, "source");
    let sources: Vec<String> = gw
        .store
        .market_sources()
        .await
        .map(|s| s.into_keys().collect())
        .unwrap_or_default();
    let result: Result<Vec<Rankings>, QueryError> = async {
        let query = table::Query::parse(
            Some(period),
            Some("model"),
            Some(weeks),
            end_date,
            source,
            None,
        )?;
        table::rankings_many(
            &gw.store,
            &gw.catalog,
            &query,
            &[By::Model, By::Author, By::Origin],
        )
        .await
    }
    .await;
    let (models, authors, origins) = match result {
        Ok(mut r) => {
            let origins = r.pop().expect("three groupings");
            let authors = r.pop().expect("three groupings");
            (r.pop().expect("three groupings"), authors, origins)
        }
        Err(e) => {
            let status = match e {
                QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            return render(
                "rankings.html",
                status,
                context! { nav => "rankings", error => e.to_string(), periods => Vec::<String>::new(),
                models => Vec::<String>::new(), origins => Vec::<String>::new(),
                period, weeks, end_date => end_date.unwrap_or_default(),
                source => source.unwrap_or("llmux"), sources, apps => () },
            );
        }
    };
    let labels: Vec<String> = models.periods.iter().map(|p| p.start.clone()).collect();
    let value = |v: f64| human_tokens(v as i64);

    // Stacked tokens by model: the top models of the window, then the rest.
    let mut top: Vec<&table::Group> = models.groups.iter().collect();
    top.sort_by(|a, b| {
        b.window_tokens
            .cmp(&a.window_tokens)
            .then(a.key.cmp(&b.key))
    });
    let mut series: Vec<Series> = top
        .iter()
        .take(CHART_MODELS)
        .map(|g| Series {
            name: g.name.clone(),
            values: g.series.iter().map(|c| c.tokens as f64).collect(),
        })
        .collect();
    if top.len() > CHART_MODELS {
        let mut rest = vec![0.0; labels.len()];
        for g in top.iter().skip(CHART_MODELS) {
            for (i, c) in g.series.iter().enumerate() {
                rest[i] += c.tokens as f64;
            }
        }
        series.push(Series {
            name: "Other".into(),
            values: rest,
        });
    }
    let models_chart = charts::stacked_columns(
        &format!("Tokens per {period} by model"),
        &labels,
        &series,
        &value,
    );
    let author_items: Vec<(String, f64)> = {
        let mut a: Vec<&table::Group> = authors.groups.iter().collect();
        a.sort_by(|x, y| {
            y.window_tokens
                .cmp(&x.window_tokens)
                .then(x.key.cmp(&y.key))
        });
        a.iter()
            .take(12)
            .map(|g| (g.name.clone(), g.window_share.unwrap_or(0) as f64 / 100.0))
            .collect()
    };
    let authors_chart = charts::bars(
        "Share of tokens over the window, by author",
        &author_items,
        &|v| format!("{v:.2}%"),
    );
    let origin_series: Vec<Series> = origins
        .groups
        .iter()
        .map(|g| Series {
            name: format!("{} ({})", g.name, g.key),
            values: g.series.iter().map(|c| c.tokens as f64).collect(),
        })
        .collect();
    let origins_chart = charts::lines(
        &format!("Tokens per {period} by country of origin"),
        &labels,
        &origin_series,
        &value,
    );
    let apps = match models.source.as_str() {
        table::OWN_SOURCE => {
            let first = models.periods.first().map(|p| p.start.clone());
            let last = models.periods.last().map(|p| p.end.clone());
            datasets::app_rankings(
                &gw.store,
                None,
                first.as_deref(),
                last.as_deref(),
                Some("20"),
                None,
            )
            .await
            .ok()
            .map(|a| a.data)
        }
        _ => None,
    };
    let api_url = format!(
        "/api/v1/rankings?period={period}&weeks={weeks}&by=model{}{}",
        source.map(|s| format!("&source={s}")).unwrap_or_default(),
        end_date
            .map(|d| format!("&end_date={d}"))
            .unwrap_or_default()
    );
    let groups: Vec<&table::Group> = models.groups.iter().take(30).collect();
    render(
        "rankings.html",
        StatusCode::OK,
        context! {
            nav => "rankings",
            source => models.source,
            period => models.period,
            weeks,
            end_date => end_date.unwrap_or_default(),
            sources,
            periods => models.periods,
            first_start => models.periods.first().map(|p| p.start.clone()),
            last_end => models.periods.last().map(|p| p.end.clone()),
            models_chart, authors_chart, origins_chart,
            origins => origins.groups,
            models => groups,
            apps,
            api_url,
        },
    )
}
