//! `/models` (the catalog: search, filter by author, origin, input modality and price, sort
//! by usage, price, context, name or date) and `/models/{author}/{slug}` (a model: prices,
//! endpoints with live health, usage over time, top apps).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{Params, param};
use crate::metering::rollup::{Period, add_days, date_string};
use crate::money::Price;
use crate::pipeline::Gateway;
use crate::rankings::compare::Prices;
use crate::rankings::{country_name, human_tokens, origin_of};
use crate::storage::TokensBy;
use crate::web::charts::{self, Series};
use crate::web::render;

#[derive(Serialize)]
struct Row {
    id: String,
    name: String,
    author: String,
    origin: String,
    prompt: String,
    completion: String,
    completion_pico: i64,
    context: Option<u64>,
    tokens: i64,
    endpoints: usize,
    created: i64,
}

/// Tokens per ranked model over the last four weeks (own public traffic).
async fn recent_tokens(gw: &Gateway) -> HashMap<String, i64> {
    let now = crate::clock::now_ms();
    let from = Period::Week.start(add_days(now, -28));
    let mut out = HashMap::new();
    if let Ok(rows) = gw
        .store
        .totals_by(TokensBy::Model, Period::Week, from, Period::Week.next(now))
        .await
    {
        for (model, tokens, _) in rows {
            let base = model.split(':').next().unwrap_or_default().to_string();
            *out.entry(base).or_default() += tokens;
        }
    }
    out
}

pub async fn list(State(gw): State<Arc<Gateway>>, q: Params) -> Response {
    let text = param(&q, "q").map(str::to_lowercase);
    let author = param(&q, "author");
    let origin = param(&q, "origin");
    let modality = param(&q, "modality");
    let routable = param(&q, "routable").is_some();
    let sort = param(&q, "sort").unwrap_or("usage");
    let mut error = None;
    let max_price = match param(&q, "max_price").map(Price::per_million_usd) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            error = Some("max_price: expected USD per million tokens, e.g. 2.5".to_string());
            None
        }
    };
    let usage = recent_tokens(&gw).await;
    let cat = &gw.catalog;
    let total = cat.models().len();
    let mut rows: Vec<Row> = cat
        .models()
        .iter()
        .filter(|m| !m.is_embedding_model())
        .filter(|m| {
            text.as_ref().is_none_or(|t| {
                m.id.to_lowercase().contains(t) || m.name.to_lowercase().contains(t)
            })
        })
        .filter(|m| author.is_none_or(|a| m.author == a))
        .filter(|m| origin.is_none_or(|o| origin_of(cat, &m.id) == o))
        .filter(|m| modality.is_none_or(|x| m.architecture.input_modalities.iter().any(|i| i == x)))
        .filter(|m| !routable || !cat.endpoints(&m.id).is_empty())
        .filter_map(|m| {
            let p = cat.listed_pricing(m);
            if max_price.is_some_and(|max| p.completion > max) {
                return None;
            }
            Some(Row {
                id: m.id.clone(),
                name: m.name.clone(),
                author: m.author.clone(),
                origin: origin_of(cat, &m.id),
                prompt: p.prompt.per_million().to_string(),
                completion: p.completion.per_million().to_string(),
                completion_pico: p.completion.0,
                context: m.context_length,
                tokens: usage.get(&m.id).copied().unwrap_or(0),
                endpoints: cat.endpoints(&m.id).len(),
                created: m.created,
            })
        })
        .collect();
    match sort {
        "price" => rows.sort_by(|a, b| {
            a.completion_pico
                .cmp(&b.completion_pico)
                .then(a.id.cmp(&b.id))
        }),
        "context" => rows.sort_by(|a, b| b.context.cmp(&a.context).then(a.id.cmp(&b.id))),
        "name" => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        "newest" => rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id))),
        _ => rows.sort_by(|a, b| b.tokens.cmp(&a.tokens).then(a.id.cmp(&b.id))),
    }
    let mut authors: Vec<(String, String)> = cat
        .models()
        .iter()
        .map(|m| {
            let name = cat
                .author(&m.author)
                .map_or(m.author.clone(), |a| a.name.clone());
            (m.author.clone(), name)
        })
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    authors.sort_by_key(|a| a.1.to_lowercase());
    let origins: Vec<minijinja::Value> = cat
        .models()
        .iter()
        .map(|m| origin_of(cat, &m.id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|code| context! { name => country_name(&code), code })
        .collect();
    render(
        "models.html",
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        context! {
            nav => "models",
            shown => rows.len(),
            total,
            models => rows,
            authors => authors.into_iter().map(|(slug, name)| context! { slug, name }).collect::<Vec<_>>(),
            origins,
            q => param(&q, "q").unwrap_or_default(),
            author => author.unwrap_or_default(),
            origin => origin.unwrap_or_default(),
            modality => modality.unwrap_or_default(),
            max_price => param(&q, "max_price").unwrap_or_default(),
            sort, routable, error,
        },
    )
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}%"))
}

pub async fn one(State(gw): State<Arc<Gateway>>, Path(id): Path<String>) -> Response {
    let cat = &gw.catalog;
    let Some(m) = cat.model(&id) else {
        return render(
            "models.html",
            StatusCode::NOT_FOUND,
            context! { nav => "models", shown => 0, total => cat.models().len(), models => Vec::<String>::new(),
            error => format!("No model {id} in the catalog.") },
        );
    };
    let endpoints: Vec<minijinja::Value> = cat
        .endpoints(&m.id)
        .iter()
        .map(|e| {
            let h = gw.router.health.snapshot(&e.provider.slug, &m.id);
            context! {
                provider => e.provider.name.clone(),
                quantization => e.quantization.clone(),
                prompt => e.pricing.prompt.per_million().to_string(),
                completion => e.pricing.completion.per_million().to_string(),
                uptime_30m => pct(h.uptime_30m),
                uptime_1d => pct(h.uptime_1d),
                latency => h.latency_30m.map_or("–".into(), |p| format!("{:.0} ms", p.p50)),
                throughput => h.throughput_30m.map_or("–".into(), |p| format!("{:.0} tok/s", p.p50)),
                circuit => format!("{:?}", h.circuit).to_lowercase(),
            }
        })
        .collect();
    // Usage per day over 30 days, the model and its :free variant apart.
    let now = crate::clock::now_ms();
    let last = Period::Day.start(now);
    let first = add_days(last, -29);
    let days: Vec<i64> = (0..30).map(|i| add_days(first, i)).collect();
    let mut per_variant: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut usage_total = 0i64;
    let mut usage_requests = 0i64;
    if let Ok(rows) = gw
        .store
        .model_series(&m.id, Period::Day, first, Period::Day.next(last))
        .await
    {
        for (start, model, tokens, requests) in rows {
            let i = ((start - first) / crate::clock::DAY_MS) as usize;
            if let Some(v) = per_variant
                .entry(model)
                .or_insert_with(|| vec![0.0; days.len()])
                .get_mut(i)
            {
                *v += tokens as f64;
            }
            usage_total += tokens;
            usage_requests += requests;
        }
    }
    let labels: Vec<String> = days
        .iter()
        .map(|d| date_string(*d)[5..].to_string())
        .collect();
    let series: Vec<Series> = per_variant
        .into_iter()
        .map(|(name, values)| Series { name, values })
        .collect();
    let usage_chart = charts::stacked_columns("Tokens per day", &labels, &series, &|v| {
        human_tokens(v as i64)
    });
    let mut apps: Vec<(String, i64)> = Vec::new();
    if let Ok(rows) = gw
        .store
        .model_apps(&m.id, Period::Day, first, Period::Day.next(last))
        .await
    {
        let titles: HashMap<String, String> = gw
            .store
            .apps()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.title.map(|t| (a.app, t)))
            .collect();
        let mut by_app: BTreeMap<String, i64> = BTreeMap::new();
        for (app, tokens) in rows {
            *by_app
                .entry(titles.get(&app).cloned().unwrap_or(app))
                .or_default() += tokens;
        }
        apps = by_app.into_iter().collect();
        apps.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        apps.truncate(10);
    }
    let author_name = cat
        .author(&m.author)
        .map_or(m.author.clone(), |a| a.name.clone());
    render(
        "model.html",
        StatusCode::OK,
        context! {
            nav => "models",
            m => context! {
                id => m.id.clone(), name => m.name.clone(), description => m.description.clone(),
                context => m.context_length,
                inputs => m.architecture.input_modalities.join(", "),
                outputs => m.architecture.output_modalities.join(", "),
            },
            author_name,
            origin_name => country_name(&origin_of(cat, &m.id)).to_string(),
            price => Prices::of(cat.listed_pricing(m)),
            endpoints,
            usage_chart, usage_total, usage_requests,
            apps => apps.into_iter().map(|(name, tokens)| context! { name, tokens }).collect::<Vec<_>>(),
        },
    )
}
