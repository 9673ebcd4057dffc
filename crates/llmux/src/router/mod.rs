//! The router: which models and endpoints a request may use, in the order to try them.
//!
//! Levels, outermost first, one file each:
//! - **model** ([`model`]): the requested model, its `:variants`, then `models[]` fallbacks;
//! - **filters** ([`filter`]): the `provider` preferences ([`preferences`]) and what the
//!   request needs, each exclusion with its reason;
//! - **order** ([`order`]): price-weighted random choice, or `sort`/`order`, with live
//!   [`health`] (stability, circuit breakers, Retry-After) and [`sticky`] conversations;
//! - **candidates**: the ordered endpoints, with the account's own keys (BYOK) placed first or
//!   last.
//!
//! The pipeline walks the candidates, falling back on retryable failures.

pub mod filter;
pub mod health;
pub mod model;
pub mod order;
pub mod preferences;
pub mod sticky;

use std::sync::Arc;

use llmux_protocol::canonical::ChatRequest;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::json;

use self::health::Health;
use self::model::{Resolved, Variants};
use self::order::EndpointInfo;
use self::preferences::{Partition, Preferences, SortBy};
use self::sticky::Sticky;
use crate::billing::byok::{ByokKey, ByokMode};
use crate::catalog::{Catalog, Endpoint, Model};
use crate::config::RouterSettings;
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

/// An endpoint left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Filtered {
    pub model: String,
    pub provider: String,
    pub reason: String,
}

/// How the router decided, for `X-OpenRouter-Metadata: enabled`.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub requested: String,
    pub strategy: &'static str,
    pub endpoints: Vec<EndpointInfo>,
    pub filtered: Vec<Filtered>,
}

/// Everything a request may try, in order: every candidate of the first model, then the
/// next model's.
pub struct RoutePlan {
    pub routes: Vec<ModelRoute>,
    pub decision: Decision,
    pub variants: Variants,
    /// The conversation, for sticky routing.
    pub conversation: u64,
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
    /// A malformed `provider` object, or an unknown variant.
    BadRequest(ApiError),
    /// Models exist but nothing can serve them.
    NoEndpoints { model: String, reasons: Vec<String> },
}

impl RouteError {
    pub fn into_api_error(self) -> ApiError {
        match self {
            RouteError::InvalidModel(m) => ApiError::bad_request(format!("{m} is not a valid model ID")),
            RouteError::BadRequest(e) => e,
            RouteError::NoEndpoints { model, reasons } => ApiError::not_found(format!(
                "No endpoints found for {model} that match this request and its provider preferences."
            ))
            .with_metadata(json!({ "reasons": reasons })),
        }
    }
}

/// Resolve a requested id to a catalog model (variants ignored), for the catalog routes.
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

pub struct Router {
    pub health: Health,
    sticky: Sticky,
    rng: Mutex<StdRng>,
}

impl Router {
    pub fn new(settings: &RouterSettings) -> Router {
        let rng = match settings.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Router {
            health: Health::new(settings.clone()),
            sticky: Sticky::new(settings.sticky_idle),
            rng: Mutex::new(rng),
        }
    }

    /// Plan a request: its models, each model's eligible endpoints in order, as candidates.
    /// `explain`: keep the decision's details (each endpoint as the router saw it, and those
    /// filtered out), for a client that asks for them; otherwise they are not made at all.
    pub fn plan(
        &self,
        catalog: &Catalog,
        req: &ChatRequest,
        byok: &[Arc<ByokKey>],
        conversation: u64,
        explain: bool,
    ) -> Result<RoutePlan, RouteError> {
        let prefs = Preferences::parse(req.provider.as_ref()).map_err(RouteError::BadRequest)?;
        let needs = filter::Needs::of(req);
        let mut ids: Vec<&str> = vec![req.model.as_str()];
        for m in &req.models {
            if !ids.contains(&m.as_str()) {
                ids.push(m);
            }
        }
        let mut routes: Vec<ModelRoute> = Vec::new();
        let mut reasons = Vec::new();
        let mut filtered = Vec::new();
        let mut infos = Vec::new();
        let mut strategy = "weighted_random_by_price";
        let mut first_variants = None;
        let mut global: Vec<(Arc<Model>, Arc<Endpoint>, EndpointInfo)> = Vec::new();
        for id in &ids {
            let (model, variants) = match model::resolve(catalog, id) {
                Resolved::Model(m, v) if !m.is_embedding_model() => (m, v),
                Resolved::UnknownVariant(v) => {
                    return Err(RouteError::BadRequest(ApiError::bad_request(format!(
                        "{id}: unknown model variant :{v} (expected :nitro, :floor, :free or :thinking)"
                    ))));
                }
                _ => {
                    if ids.len() == 1 {
                        return Err(RouteError::InvalidModel(id.to_string()));
                    }
                    reasons.push(format!("{id}: not a valid chat model ID"));
                    continue;
                }
            };
            first_variants.get_or_insert(variants);
            let mut eligible = Vec::new();
            for e in catalog.endpoints(&model.id) {
                match filter::exclusion(e, &model, &prefs, &needs, variants) {
                    None => eligible.push(e.clone()),
                    Some(reason) => {
                        reasons.push(format!("{}: {reason}", model.id));
                        if explain {
                            filtered.push(Filtered {
                                model: model.id.clone(),
                                provider: e.provider.slug.clone(),
                                reason,
                            });
                        }
                    }
                }
            }
            if catalog.endpoints(&model.id).is_empty() {
                reasons.push(format!("{}: no provider serves this model", model.id));
            }
            if eligible.is_empty() {
                continue;
            }
            let sort = prefs.sort.map(|s| s.by).or(if variants.nitro {
                Some(SortBy::Throughput)
            } else if variants.floor {
                Some(SortBy::Price)
            } else {
                None
            });
            let sticky = self.sticky.get(conversation, &model.id);
            // `partition: none` sorts every model's endpoints together by what `info` says.
            let global_sort = prefs.sort.is_some_and(|s| s.partition == Partition::None);
            let ordered = order::order(
                &model.id,
                eligible,
                sort,
                &prefs,
                &self.health,
                &mut self.rng.lock(),
                sticky.as_deref(),
                explain || global_sort,
            );
            strategy = ordered.strategy;
            if global_sort {
                for (e, i) in ordered.endpoints.into_iter().zip(ordered.info) {
                    global.push((model.clone(), e, i));
                }
                continue;
            }
            infos.extend(ordered.info);
            routes.push(ModelRoute {
                candidates: with_byok(ordered.endpoints, byok),
                model,
            });
        }
        if !global.is_empty() {
            // `partition: none`: every model's endpoints sorted together.
            let by = prefs.sort.map(|s| s.by).unwrap_or(SortBy::Price);
            let key = |i: &EndpointInfo| match by {
                SortBy::Price => i.blended_price,
                SortBy::Throughput => -i.throughput_p50.unwrap_or(f64::INFINITY),
                SortBy::Latency => i.latency_p50_ms.unwrap_or(f64::NEG_INFINITY),
            };
            global.sort_by(|a, b| key(&a.2).total_cmp(&key(&b.2)));
            for (model, e, info) in global {
                if explain {
                    infos.push(info);
                }
                routes.push(ModelRoute {
                    candidates: with_byok(vec![e], byok),
                    model,
                });
            }
        }
        if routes.is_empty() {
            return Err(RouteError::NoEndpoints {
                model: req.model.clone(),
                reasons,
            });
        }
        for i in &mut infos {
            i.byok = byok.iter().any(|k| k.provider == i.provider);
        }
        Ok(RoutePlan {
            routes,
            decision: Decision {
                requested: req.model.clone(),
                strategy,
                endpoints: infos,
                filtered,
            },
            variants: first_variants.unwrap_or_default(),
            conversation,
        })
    }

    /// A generation was served: remember the endpoint for the conversation when its cached
    /// prompts are cheaper (prompt caching pays off only on the same endpoint).
    pub fn served(&self, plan: &RoutePlan, model: &Model, e: &Endpoint) {
        let p = &e.pricing;
        if p.input_cache_read.is_some_and(|c| c < p.prompt) {
            self.sticky
                .put(plan.conversation, &model.id, &e.provider.slug);
        }
    }
}
