//! `POST /api/v1/messages`: the Anthropic Messages API for any model in the catalog, answered
//! in Anthropic's response, SSE and error formats (with OpenRouter's extras: `models`,
//! `provider`). Also `POST /api/v1/messages/count_tokens`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use llmux_protocol::anthropic;
use llmux_protocol::anthropic::render::{EventWriter, MessageMeta};
use llmux_protocol::canonical::{ChatResponse, Finish, StreamEvent, Usage};
use serde_json::json;

use super::{Format, Served, StreamWriter};
use crate::catalog::Api;
use crate::money::Money;
use crate::pipeline::{self, Gateway, RequestMeta, accounting};
use crate::server::auth;
use crate::server::error::ApiError;

pub struct AnthropicMessages;

impl Format for AnthropicMessages {
    fn api_type(&self) -> &'static str {
        "messages"
    }

    fn same_protocol(&self, api: Api) -> bool {
        api == Api::Anthropic
    }

    fn render_complete(
        &self,
        events: &[StreamEvent],
        resp: &ChatResponse,
        s: &Served<'_>,
    ) -> Vec<u8> {
        let cost = s.cost.to_string();
        anthropic::render::render_message(
            events,
            resp.finish.as_ref(),
            &MessageMeta {
                id: s.id,
                model: s.model,
                provider: s.provider_name,
                usage: s.usage,
                cost: &cost,
                metadata: s.metadata,
            },
        )
    }

    fn stream_writer(
        &self,
        id: &str,
        model: &str,
        _provider_name: &str,
        _created: i64,
    ) -> Box<dyn StreamWriter> {
        Box::new(Writer(EventWriter::new(id, model)))
    }

    fn error_body(&self, err: &ApiError) -> Vec<u8> {
        anthropic::render::error_body(err.status.as_u16(), &err.message)
    }

    fn keepalive(&self) -> &'static [u8] {
        anthropic::render::PING
    }
}

struct Writer(EventWriter);

impl StreamWriter for Writer {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        self.0.event(ev, out)
    }

    fn finish(
        &mut self,
        finish: Option<&Finish>,
        usage: &Usage,
        cost: Money,
        _is_byok: bool,
        metadata: Option<&serde_json::Value>,
        out: &mut Vec<u8>,
    ) {
        self.0
            .finish(finish, usage, &cost.to_string(), metadata, out)
    }

    fn error(&mut self, status: u16, message: &str, _error_type: &str, out: &mut Vec<u8>) {
        self.0.error(status, message, out)
    }
}

fn anthropic_error(err: ApiError) -> Response {
    let body = AnthropicMessages.error_body(&err);
    err.into_response_with(body)
}

pub async fn messages(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let (headers, body) = auth::headers_and_body(request);
    let key = match auth::inference_key(&gw, &headers).await {
        Ok(k) => k,
        Err(e) => return anthropic_error(e),
    };
    let meta = RequestMeta::from_headers(&headers);
    let bytes = match auth::read_body(body, &headers, gw.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return anthropic_error(pipeline::reject(&gw, &key, &meta, "messages", None, e)),
    };
    let req = match anthropic::parse_request(&bytes) {
        Ok(r) => r,
        Err(e) => {
            let model = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string));
            let err = ApiError::bad_request(e.to_string());
            return anthropic_error(pipeline::reject(&gw, &key, &meta, "messages", model, err));
        }
    };
    pipeline::execute(gw, key, req, meta, Arc::new(AnthropicMessages)).await
}

/// `POST /messages/count_tokens`: the prompt's tokens, counted with llmux's tokenizer.
pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = auth::inference_key(&gw, &headers).await {
        return anthropic_error(e);
    }
    let bytes = match auth::read_body(body, &headers, gw.config.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return anthropic_error(e),
    };
    match anthropic::parse_request(&bytes) {
        Ok(req) => {
            Json(json!({"input_tokens": accounting::estimate_prompt_tokens(&req)})).into_response()
        }
        Err(e) => anthropic_error(ApiError::bad_request(e.to_string())),
    }
}
