//! The router: which models and endpoints a request may use, in the order to try them.
//!
//! Levels, outermost first: **model** (the requested model, then `models[]` fallbacks) →
//! **candidates** of each model (its endpoints in the routing policy's order, with the
//! account's own provider keys placed first or last) → the attempt loop in the pipeline,
//! which walks them.

use std::sync::Arc;

use llmux_protocol::canonical::ChatRequest;
use serde_json::json;

use crate::billing::byok::{ByokKey, ByokMode};
use crate::catalog::{Catalog, Endpoint, Model};
use crate::server::error::ApiError;

/// One way to serve: an endpoint, with the shared credentials or an account's own key.
#[derive(Clone)]
pub struct Candidate {
    pub endpoint: Arc<Endpoint>,
    pub byok: Option<Arc<ByokKey>>,
}

/// One model and its candidates, in the order to try them.
pub struct ModelRoute {
    pub model: Arc<Model>,
    pub candidates: Vec<Candidate>,
}

/// Everything a request may try, in order: every candidate of the first model, then the
/// next model's.
pub struct RoutePlan {
    pub routes: Vec<ModelRoute>,
}

impl RoutePlan {
    pub fn attempts(&self) -> impl Iterator<Item = (&Arc<Model>, &Candidate)> {
        self.routes
            .iter()
            .flat_map(|r| r.candidates.iter().map(move |c| (&r.model, c)))
    }
}

#[derive(Debug)]
pub enum RouteError {
    /// No such model in the catalog.
    InvalidModel(String),
    /// The model exists but nothing can serve it.
    NoEndpoints { model: String, reasons: Vec<String> },
}

impl RouteError {
    pub fn into_api_error(self) -> ApiError {
        match self {
            RouteError::InvalidModel(m) => {
                ApiError::bad_request(format!("{m} is not a valid model ID"))
            }
            RouteError::NoEndpoints { model, reasons } => {
                ApiError::not_found(format!("No endpoints found for {model}."))
                    .with_metadata(json!({ "reasons": reasons }))
            }
        }
    }
}

/// Resolve a requested id to a catalog model: the exact id, else the id without its
/// `:variant` suffix.
pub fn resolve_model<'a>(catalog: &'a Catalog, requested: &str) -> Option<&'a Arc<Model>> {
    catalog.model(requested).or_else(|| {
        let (base, _variant) = requested.split_once(':')?;
        catalog.model(base)
    })
}

/// The candidates for a model's endpoints (already in policy order): with the account's
/// own keys placed before the shared endpoints (`prioritized`) or after them (`fallback`).
pub fn with_byok(endpoints: Vec<Arc<Endpoint>>, byok: &[Arc<ByokKey>]) -> Vec<Candidate> {
    let own = |mode: ByokMode| -> Vec<Candidate> {
        endpoints
            .iter()
            .filter_map(|e| {
                byok.iter()
                    .find(|k| k.mode == mode && k.provider == e.provider.slug)
                    .map(|k| Candidate {
                        endpoint: e.clone(),
                        byok: Some(k.clone()),
                    })
            })
            .collect()
    };
    let mut out = own(ByokMode::Prioritized);
    out.extend(endpoints.iter().map(|e| Candidate {
        endpoint: e.clone(),
        byok: None,
    }));
    out.extend(own(ByokMode::Fallback));
    out
}

pub fn plan(
    catalog: &Catalog,
    req: &ChatRequest,
    byok: &[Arc<ByokKey>],
) -> Result<RoutePlan, RouteError> {
    let mut ids: Vec<&str> = vec![req.model.as_str()];
    for m in &req.models {
        if !ids.contains(&m.as_str()) {
            ids.push(m);
        }
    }
    let mut routes = Vec::new();
    let mut reasons = Vec::new();
    for id in &ids {
        let Some(model) = resolve_model(catalog, id).filter(|m| !m.is_embedding_model()) else {
            if routes.is_empty() && ids.len() == 1 {
                return Err(RouteError::InvalidModel(id.to_string()));
            }
            reasons.push(format!("{id}: not a valid chat model ID"));
            continue;
        };
        let mut endpoints: Vec<Arc<Endpoint>> = catalog.endpoints(&model.id).to_vec();
        if endpoints.is_empty() {
            reasons.push(format!("{}: no provider serves this model", model.id));
            continue;
        }
        endpoints.sort_by_key(|e| e.pricing.prompt.0.saturating_add(e.pricing.completion.0));
        routes.push(ModelRoute {
            model: model.clone(),
            candidates: with_byok(endpoints, byok),
        });
    }
    if routes.is_empty() {
        return Err(RouteError::NoEndpoints {
            model: req.model.clone(),
            reasons,
        });
    }
    Ok(RoutePlan { routes })
}
