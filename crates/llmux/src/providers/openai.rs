//! The OpenAI-compatible adapter (OpenAI, DeepSeek, MiniMax, Moonshot, Zhipu, Groq, Together,
//! Fireworks, DeepInfra, vLLM, llama.cpp, Ollama, OpenRouter, ...): `POST {base_url}/chat/completions`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, header};
use llmux_protocol::ProtocolError;
use llmux_protocol::canonical::{ChatRequest, StreamEvent};
use llmux_protocol::openai;
use llmux_protocol::sse::SseEvent;

use super::{Adapter, BuildContext, EventDecoder, UpstreamRequest};
use crate::catalog::{Endpoint, Provider};

pub struct OpenAiAdapter;

/// Headers for an OpenAI-compatible request: JSON, Bearer auth, the provider's own.
fn headers(
    p: &Provider,
    stream: bool,
    secret: Option<&str>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ProtocolError> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(4 + p.headers.len());
    headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    if stream {
        headers.push((
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        ));
    }
    if let Some(secret) = secret {
        let v = HeaderValue::try_from(format!("Bearer {secret}")).map_err(|_| {
            ProtocolError::unsupported("the provider key is not a valid header value")
        })?;
        headers.push((header::AUTHORIZATION, v));
    }
    headers.extend(p.headers.iter().cloned());
    Ok(headers)
}

/// `POST {base_url}/embeddings` with an already encoded body, authenticated with `secret`
/// (an account's own key) or the provider's key.
pub fn embeddings_request(
    e: &Endpoint,
    secret: Option<&str>,
    body: Vec<u8>,
) -> Result<UpstreamRequest, ProtocolError> {
    Ok(UpstreamRequest {
        url: format!("{}/embeddings", e.provider.base_url),
        headers: headers(
            &e.provider,
            false,
            secret.or_else(|| e.provider.credential.secret()),
        )?,
        body: Bytes::from(body),
    })
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
        Ok(UpstreamRequest {
            url: format!("{}/chat/completions", p.base_url),
            headers: headers(p, ctx.stream, ctx.secret())?,
            body: Bytes::from(body),
        })
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
