//! The OpenAI-compatible adapter (OpenAI, DeepSeek, MiniMax, Moonshot, Zhipu, Groq, Together,
//! Fireworks, DeepInfra, vLLM, llama.cpp, Ollama, OpenRouter, ...): `POST {base_url}/chat/completions`.

use http::{HeaderValue, header};
use llmux_protocol::ProtocolError;
use llmux_protocol::canonical::{ChatRequest, StreamEvent};
use llmux_protocol::openai;
use llmux_protocol::sse::SseEvent;

use super::{Adapter, BuildContext, EventDecoder, RequestHead, UpstreamRequest, secret_header};
use crate::catalog::{Endpoint, Provider};

pub struct OpenAiAdapter;

/// `Authorization: Bearer {secret}`.
fn bearer(secret: &str) -> Result<HeaderValue, ProtocolError> {
    secret_header(&format!("Bearer {secret}"))
}

/// An OpenAI-compatible request's head: JSON, Bearer auth with the provider's key, the
/// provider's own headers.
fn head(p: &Provider, path: &str, stream: bool) -> Result<RequestHead, ProtocolError> {
    let mut headers = vec![(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    if stream {
        headers.push((
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        ));
    }
    if let Some(secret) = p.credential.secret() {
        headers.push((header::AUTHORIZATION, bearer(secret)?));
    }
    RequestHead::new(p, path, headers)
}

/// The request with `head`, authenticated with the account's own key where it has one.
fn with_credential(
    head: &RequestHead,
    credential: Option<&str>,
    body: Vec<u8>,
) -> Result<UpstreamRequest, ProtocolError> {
    let mut req = head.request(body);
    if let Some(own) = credential {
        req.headers.insert(header::AUTHORIZATION, bearer(own)?);
    }
    Ok(req)
}

/// `POST {base_url}/embeddings` with an already encoded body, authenticated with `secret`
/// (an account's own key) or the provider's key.
pub fn embeddings_request(
    e: &Endpoint,
    secret: Option<&str>,
    body: Vec<u8>,
) -> Result<UpstreamRequest, ProtocolError> {
    with_credential(&head(&e.provider, "/embeddings", false)?, secret, body)
}

impl Adapter for OpenAiAdapter {
    fn build(
        &self,
        req: &ChatRequest,
        ctx: &BuildContext<'_>,
    ) -> Result<UpstreamRequest, ProtocolError> {
        let e = ctx.endpoint;
        let p = &e.provider;
        let body = openai::encode_request(
            req,
            &openai::EncodeOptions {
                model: &e.upstream_model,
                stream: ctx.stream,
                dialect: p.dialect,
                stream_usage: p.stream_usage,
                forward_extra: ctx.same_protocol,
            },
        )?;
        let head = e
            .request_heads
            .get_or_make(ctx.stream, || head(p, "/chat/completions", ctx.stream))?;
        with_credential(head, ctx.credential, body)
    }

    fn decode_response(&self, body: &[u8]) -> Result<Vec<StreamEvent>, ProtocolError> {
        openai::decode_response(body).map(|r| r.to_events())
    }

    fn stream_decoder(&self) -> Box<dyn EventDecoder> {
        Box::new(Decoder(openai::StreamDecoder::new()))
    }

    fn error_message(&self, body: &[u8]) -> String {
        openai::decode_error_message(body)
    }
}

struct Decoder(openai::StreamDecoder);

impl EventDecoder for Decoder {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProtocolError> {
        self.0.decode(&ev.data, out)
    }
    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.0.finish(out)
    }
}
