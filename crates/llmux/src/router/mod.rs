//! The router: which models and endpoints a request may use, in the order to try them.
//!
//! Levels, outermost first: **model** (the requested model, then `models[]` fallbacks) →
//! **endpoints** of each model (ordered by the routing policy) → the attempt loop in the
//! pipeline, which walks them.

use std::sync::Arc;

use llmux_protocol::canonical::ChatRequest;
use serde_json::json;

use crate::catalog::{Catalog, Endpoint, Model};
use crate::server::error::ApiError;

/// One model and its endpoints, in the order to try them.
pub struct ModelRoute {
    pub model: Arc<Model>,
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// Everything a request may try, in order: every endpoint of the first model, then the next
/// model's.
pub struct RoutePlan {
    pub routes: Vec<ModelRoute>,
}

impl RoutePlan {
    pub fn attempts(&self) -> impl Iterator<Item = (&Arc<Model>, &Arc<Endpoint>)> {
        self.routes
            .iter()
            .flat_map(|r| r.endpoints.iter().map(move |e| (&r.model, e)))
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

pub fn plan(catalog: &Catalog, req: &ChatRequest) -> Result<RoutePlan, RouteError> {
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
            endpoints,
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
