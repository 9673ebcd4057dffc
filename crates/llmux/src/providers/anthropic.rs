//! The Anthropic adapter: `POST {base_url}/messages` with `x-api-key` and `anthropic-version`.

use http::{HeaderName, HeaderValue, header};
use llmux_protocol::ProtocolError;
use llmux_protocol::anthropic;
use llmux_protocol::canonical::{ChatRequest, StreamEvent};
use llmux_protocol::sse::SseEvent;

use super::{Adapter, BuildContext, EventDecoder, RequestHead, UpstreamRequest, secret_header};

/// The header the key goes in.
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// `max_tokens` for requests that set none, when the endpoint does not say its limit either.
const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct AnthropicAdapter;

impl Adapter for AnthropicAdapter {
    fn build(
        &self,
        req: &ChatRequest,
        ctx: &BuildContext<'_>,
    ) -> Result<UpstreamRequest, ProtocolError> {
        let e = ctx.endpoint;
        let p = &e.provider;
        let default_max_tokens = e
            .max_completion_tokens
            .map(|m| m.min(u32::MAX as u64) as u32)
            .unwrap_or(DEFAULT_MAX_TOKENS);
        let body = anthropic::encode_request(
            req,
            &anthropic::EncodeOptions {
                model: &e.upstream_model,
                stream: ctx.stream,
                default_max_tokens,
                forward_extra: ctx.same_protocol,
            },
        )?;
        let head = e.request_heads.get_or_make(ctx.stream, || {
            let mut headers = vec![
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
                (
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static(anthropic::API_VERSION),
                ),
            ];
            if ctx.stream {
                headers.push((
                    header::ACCEPT,
                    HeaderValue::from_static("text/event-stream"),
                ));
            }
            if let Some(secret) = p.credential.secret() {
                headers.push((API_KEY, secret_header(secret)?));
            }
            RequestHead::new(p, "/messages", headers)
        })?;
        let mut request = head.request(body);
        if let Some(own) = ctx.credential {
            request.headers.insert(API_KEY, secret_header(own)?);
        }
        // Per request: the client's own beta features.
        if let Some(beta) = ctx.anthropic_beta
            && let Ok(v) = HeaderValue::try_from(beta)
        {
            request
                .headers
                .append(HeaderName::from_static("anthropic-beta"), v);
        }
        Ok(request)
    }

    fn decode_response(&self, body: &[u8]) -> Result<Vec<StreamEvent>, ProtocolError> {
        anthropic::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn EventDecoder> {
        Box::new(Decoder(anthropic::StreamDecoder::new()))
    }

    fn error_message(&self, body: &[u8]) -> String {
        anthropic::decode_error_message(body)
    }
}

struct Decoder(anthropic::StreamDecoder);

impl EventDecoder for Decoder {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProtocolError> {
        self.0.decode(ev.event.as_deref(), &ev.data, out)
    }
    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.0.finish(out)
    }
}
