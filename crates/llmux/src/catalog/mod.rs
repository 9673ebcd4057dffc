//! The catalog: models (with their authors and countries of origin), providers, and the
//! endpoints that connect them (model × provider, with prices and limits).
//!
//! It is built once at start from the bundled snapshot plus the configuration file (and, in
//! demo mode, the simulated providers), and is immutable afterwards.

mod bundled;
mod endpoint;
mod model;
mod provider;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use anyhow::{Context, bail};

pub use endpoint::{Endpoint, Pricing};
pub use model::{Architecture, Author, Model, TopProvider};
pub use provider::{Api, Credential, Provider};

use crate::config::Config;
use crate::money::Price;

pub struct Catalog {
    models: Vec<Arc<Model>>,
    by_id: HashMap<String, Arc<Model>>,
    /// Dated permaslugs (`canonical_slug`, as in rankings datasets) to models; the first
    /// model by id wins when variants share one (`a/m` before `a/m:free`).
    by_canonical: HashMap<String, Arc<Model>>,
    authors: HashMap<String, Author>,
    providers: Vec<Arc<Provider>>,
    provider_by_slug: HashMap<String, Arc<Provider>>,
    endpoints_by_model: HashMap<String, Vec<Arc<Endpoint>>>,
}

impl Catalog {
    /// The bundled models and authors plus everything the configuration adds or overrides.
    /// `extra_providers` / `extra_endpoints` come from demo mode.
    pub fn build(
        config: &Config,
        demo: Option<&crate::demo::DemoProviders>,
    ) -> anyhow::Result<Catalog> {
        let (authors, bundled_models) = bundled::load()?;
        let mut authors: HashMap<String, Author> =
            authors.into_iter().map(|a| (a.slug.clone(), a)).collect();
        let mut models: Vec<Model> = bundled_models;

        for m in &config.file.models {
            let Some((author, _)) = m.id.split_once('/') else {
                bail!("models: id {:?} must be author/slug", m.id);
            };
            if let Some(origin) = &m.origin {
                authors
                    .entry(author.to_string())
                    .or_insert_with(|| Author {
                        slug: author.to_string(),
                        name: author.to_string(),
                        origin: None,
                    })
                    .origin = Some(origin.clone());
            }
            match models.iter_mut().find(|x| x.id == m.id) {
                Some(existing) => existing.apply_override(m),
                None => models.push(Model::from_config(m)),
            }
        }
        for m in &mut models {
            m.origin = authors.get(&m.author).and_then(|a| a.origin.clone());
        }
        models.sort_by(|a, b| a.id.cmp(&b.id));
        let models: Vec<Arc<Model>> = models.into_iter().map(Arc::new).collect();
        let by_id: HashMap<String, Arc<Model>> =
            models.iter().map(|m| (m.id.clone(), m.clone())).collect();
        let mut by_canonical: HashMap<String, Arc<Model>> = HashMap::new();
        for m in &models {
            by_canonical
                .entry(m.canonical_slug.clone())
                .or_insert_with(|| m.clone());
        }

        let mut providers: Vec<Arc<Provider>> = Vec::new();
        if let Some(d) = demo {
            providers.extend(d.providers.iter().cloned().map(Arc::new));
        }
        for p in &config.file.providers {
            if providers.iter().any(|x| x.slug == p.slug) {
                bail!("providers: slug {:?} is defined twice", p.slug);
            }
            providers.push(Arc::new(Provider::from_config(p)?));
        }
        let provider_by_slug: HashMap<String, Arc<Provider>> = providers
            .iter()
            .map(|p| (p.slug.clone(), p.clone()))
            .collect();

        let mut endpoints_by_model: HashMap<String, Vec<Arc<Endpoint>>> = HashMap::new();
        let mut add = |e: Endpoint| -> anyhow::Result<()> {
            let list = endpoints_by_model.entry(e.model_id.clone()).or_default();
            // A configured endpoint replaces a demo one for the same model and provider.
            list.retain(|x| x.provider.slug != e.provider.slug);
            list.push(Arc::new(e));
            Ok(())
        };
        if let Some(d) = demo {
            for m in &models {
                if let Some(e) = d.endpoint_for(m, &provider_by_slug) {
                    add(e)?;
                }
            }
        }
        for e in &config.file.endpoints {
            let model = by_id.get(&e.model).with_context(|| {
                format!(
                    "endpoints: model {:?} is not in the catalog (add it under [[models]])",
                    e.model
                )
            })?;
            let provider = provider_by_slug.get(&e.provider).with_context(|| {
                format!(
                    "endpoints: provider {:?} is not defined under [[providers]]",
                    e.provider
                )
            })?;
            add(Endpoint::from_config(e, model, provider.clone())?)?;
        }
        Ok(Catalog {
            models,
            by_id,
            by_canonical,
            authors,
            providers,
            provider_by_slug,
            endpoints_by_model,
        })
    }

    pub fn models(&self) -> &[Arc<Model>] {
        &self.models
    }

    pub fn model(&self, id: &str) -> Option<&Arc<Model>> {
        self.by_id.get(id)
    }

    /// The model a dated permaslug names (`deepseek/deepseek-v3.2-20251201`).
    pub fn model_by_permaslug(&self, permaslug: &str) -> Option<&Arc<Model>> {
        self.by_canonical.get(permaslug)
    }

    pub fn author(&self, slug: &str) -> Option<&Author> {
        self.authors.get(slug)
    }

    pub fn authors(&self) -> impl Iterator<Item = &Author> {
        self.authors.values()
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn provider(&self, slug: &str) -> Option<&Arc<Provider>> {
        self.provider_by_slug.get(slug)
    }

    /// The endpoints serving `model_id` (empty when none is configured).
    pub fn endpoints(&self, model_id: &str) -> &[Arc<Endpoint>] {
        self.endpoints_by_model
            .get(model_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Models with at least one endpoint, in id order.
    pub fn routable_models(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models
            .iter()
            .filter(|m| !self.endpoints(&m.id).is_empty())
    }

    /// The price a model is listed at: its cheapest endpoint's (by prompt + completion price),
    /// else the catalog's reference price.
    pub fn listed_pricing<'a>(&'a self, model: &'a Model) -> &'a Pricing {
        self.endpoints(&model.id)
            .iter()
            .min_by_key(|e| e.pricing.prompt.0.saturating_add(e.pricing.completion.0))
            .map(|e| &e.pricing)
            .unwrap_or(&model.reference_pricing)
    }
}

/// Parse an optional per-token price string from the catalog snapshot; negative prices mark
/// "variable" router pseudo-models and count as unknown.
pub(crate) fn catalog_price(s: Option<&str>) -> anyhow::Result<Option<Price>> {
    match s {
        None => Ok(None),
        Some(s) if s.trim_start().starts_with('-') => Ok(None),
        Some(s) => Ok(Some(Price::per_unit_usd(s)?)),
    }
}
