//! `POST /api/v1/chat/completions`: the OpenAI chat-completions API with OpenRouter's
//! extensions, answered in OpenRouter's response and SSE shapes.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use llmux_protocol::canonical::{ChatResponse, Finish, StreamEvent, Usage};
use llmux_protocol::openai;
use llmux_protocol::openai::render::{ChunkWriter, ResponseMeta};

use super::{Format, Served, StreamWriter};
use crate::catalog::Api;
use crate::money::Money;
use crate::pipeline::{self, Gateway, RequestMeta};
use crate::server::auth;
use crate::server::error::ApiError;

pub struct OpenAiChat {
    pub exclude_reasoning: bool,
}

impl Format for OpenAiChat {
    fn api_type(&self) -> &'static str {
        "completions"
    }

    fn same_protocol(&self, api: Api) -> bool {
        api == Api::OpenAi
    }

    fn render_complete(
        &self,
        _events: &[StreamEvent],
        resp: &ChatResponse,
        s: &Served<'_>,
    ) -> Vec<u8> {
        let cost = s.cost.to_string();
        openai::render::render_response(
            resp,
            &ResponseMeta {
                id: s.id,
                model: s.model,
                created: s.created,
                provider: s.provider_name,
                usage: s.usage,
                cost: &cost,
                is_byok: s.is_byok,
                exclude_reasoning: self.exclude_reasoning,
                metadata: s.metadata,
            },
        )
    }

    fn stream_writer(
        &self,
        id: &str,
        model: &str,
        provider_name: &str,
        created: i64,
    ) -> Box<dyn StreamWriter> {
        Box::new(Writer(ChunkWriter::new(
            id,
            model,
            provider_name,
            created,
            self.exclude_reasoning,
        )))
    }

    fn error_body(&self, err: &ApiError) -> Vec<u8> {
        serde_json::to_vec(&err.body()).unwrap_or_default()
    }
}

struct Writer(ChunkWriter);

impl StreamWriter for Writer {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        self.0.event(ev, out)
    }

    fn finish(
        &mut self,
        _finish: Option<&Finish>,
        usage: &Usage,
        cost: Money,
        is_byok: bool,
        metadata: Option<&serde_json::Value>,
        out: &mut Vec<u8>,
    ) {
        self.0
            .usage(usage, &cost.to_string(), is_byok, metadata, out);
        ChunkWriter::done(out);
    }

    fn error(&mut self, status: u16, message: &str, error_type: &str, out: &mut Vec<u8>) {
        self.0.error(status, message, error_type, out);
        ChunkWriter::done(out);
    }
}

pub async fn chat_completions(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let (headers, body) = auth::headers_and_body(request);
    let key = match auth::inference_key(&gw, &headers).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let meta = RequestMeta::from_headers(&headers);
    let bytes = match auth::read_body(body, &headers, gw.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            return pipeline::reject(&gw, &key, &meta, "completions", None, e).into_response();
        }
    };
    let req = match openai::parse_request(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let err = ApiError::bad_request(e.to_string());
            let model = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string));
            return pipeline::reject(&gw, &key, &meta, "completions", model, err).into_response();
        }
    };
    let format = Arc::new(OpenAiChat {
        exclude_reasoning: req.reasoning.as_ref().is_some_and(|r| r.exclude),
    });
    pipeline::execute(gw, key, req, meta, format).await
}
