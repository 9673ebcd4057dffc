//! Models and their authors.

use serde_json::Value;

use super::endpoint::Pricing;
use crate::config::ModelSection;

#[derive(Debug, Clone)]
pub struct Author {
    pub slug: String,
    pub name: String,
    /// Country of origin (ISO code), when established.
    pub origin: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Architecture {
    pub modality: String,
    pub input_modalities: Vec<String>,
    pub output_modalities: Vec<String>,
    pub tokenizer: Option<String>,
    pub instruct_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TopProvider {
    pub context_length: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub is_moderated: bool,
}

/// A model as the catalog describes it (OpenRouter's model object, plus origin).
#[derive(Debug, Clone)]
pub struct Model {
    /// `author/slug`
    pub id: String,
    pub canonical_slug: String,
    pub name: String,
    pub author: String,
    pub created: i64,
    pub description: String,
    pub context_length: Option<u64>,
    pub architecture: Architecture,
    /// The price the public catalog lists (used for the demo's endpoints and comparisons).
    pub reference_pricing: Pricing,
    pub top_provider: TopProvider,
    pub supported_parameters: Vec<String>,
    pub default_parameters: Value,
    pub per_request_limits: Value,
    pub hugging_face_id: Option<String>,
    pub knowledge_cutoff: Option<String>,
    pub expiration_date: Option<String>,
    /// Author's country of origin.
    pub origin: Option<String>,
}

impl Model {
    pub fn slug(&self) -> &str {
        self.id.split_once('/').map_or(self.id.as_str(), |(_, s)| s)
    }

    /// A model whose output is embeddings (served by `/embeddings`, not chat).
    pub fn is_embedding_model(&self) -> bool {
        self.architecture
            .output_modalities
            .iter()
            .any(|o| o == "embeddings")
    }

    pub fn accepts_images(&self) -> bool {
        self.architecture
            .input_modalities
            .iter()
            .any(|m| m == "image")
    }

    pub(super) fn from_config(m: &ModelSection) -> Model {
        let author = m.id.split_once('/').map_or("", |(a, _)| a).to_string();
        let input = m
            .input_modalities
            .clone()
            .unwrap_or_else(|| vec!["text".into()]);
        let output = m
            .output_modalities
            .clone()
            .unwrap_or_else(|| vec!["text".into()]);
        Model {
            id: m.id.clone(),
            canonical_slug: m.id.clone(),
            name: m.name.clone().unwrap_or_else(|| m.id.clone()),
            author,
            created: 0,
            description: m.description.clone().unwrap_or_default(),
            context_length: m.context_length,
            architecture: Architecture {
                modality: format!("{}->{}", input.join("+"), output.join("+")),
                input_modalities: input,
                output_modalities: output,
                tokenizer: None,
                instruct_type: None,
            },
            reference_pricing: Pricing::default(),
            top_provider: TopProvider {
                context_length: m.context_length,
                max_completion_tokens: None,
                is_moderated: false,
            },
            supported_parameters: m
                .supported_parameters
                .clone()
                .unwrap_or_else(default_parameters),
            default_parameters: Value::Null,
            per_request_limits: Value::Null,
            hugging_face_id: m.hugging_face_id.clone(),
            knowledge_cutoff: None,
            expiration_date: None,
            origin: None,
        }
    }

    pub(super) fn apply_override(&mut self, m: &ModelSection) {
        if let Some(n) = &m.name {
            self.name = n.clone();
        }
        if let Some(d) = &m.description {
            self.description = d.clone();
        }
        if let Some(c) = m.context_length {
            self.context_length = Some(c);
        }
        if let Some(i) = &m.input_modalities {
            self.architecture.input_modalities = i.clone();
        }
        if let Some(o) = &m.output_modalities {
            self.architecture.output_modalities = o.clone();
        }
        if let Some(p) = &m.supported_parameters {
            self.supported_parameters = p.clone();
        }
        if m.hugging_face_id.is_some() {
            self.hugging_face_id = m.hugging_face_id.clone();
        }
    }
}

pub(crate) fn default_parameters() -> Vec<String> {
    [
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "tools",
        "tool_choice",
        "response_format",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
