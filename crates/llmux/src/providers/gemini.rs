//! The Gemini adapter: `POST {base_url}/models/{model}:generateContent` (or
//! `:streamGenerateContent?alt=sse`) with `x-goog-api-key`.

use http::{HeaderName, HeaderValue, header};
use llmux_protocol::ProtocolError;
use llmux_protocol::canonical::{ChatRequest, StreamEvent};
use llmux_protocol::gemini;
use llmux_protocol::sse::SseEvent;

use super::{Adapter, BuildContext, EventDecoder, RequestHead, UpstreamRequest, secret_header};

/// The header the key goes in.
const API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

pub struct GeminiAdapter;

impl Adapter for GeminiAdapter {
    fn build(
        &self,
        req: &ChatRequest,
        ctx: &BuildContext<'_>,
    ) -> Result<UpstreamRequest, ProtocolError> {
        let e = ctx.endpoint;
        let p = &e.provider;
        let body = gemini::encode_request(
            req,
            &gemini::EncodeOptions {
                forward_extra: false,
            },
        )?;
        let head = e.request_heads.get_or_make(ctx.stream, || {
            let mut headers = vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )];
            if let Some(secret) = p.credential.secret() {
                headers.push((API_KEY, secret_header(secret)?));
            }
            let method = if ctx.stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            RequestHead::new(
                p,
                &format!("/models/{}:{method}", e.upstream_model),
                headers,
            )
        })?;
        let mut request = head.request(body);
        if let Some(own) = ctx.credential {
            request.headers.insert(API_KEY, secret_header(own)?);
        }
        Ok(request)
    }

    fn decode_response(&self, body: &[u8]) -> Result<Vec<StreamEvent>, ProtocolError> {
        gemini::decode_response(body)
    }

    fn stream_decoder(&self) -> Box<dyn EventDecoder> {
        Box::new(Decoder(gemini::StreamDecoder::new()))
    }

    fn error_message(&self, body: &[u8]) -> String {
        llmux_protocol::openai::decode_error_message(body)
    }
}

struct Decoder(gemini::StreamDecoder);

impl EventDecoder for Decoder {
    fn decode(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<bool, ProtocolError> {
        // Gemini streams end when the connection does; there is no end marker.
        self.0.decode(&ev.data, out).map(|()| false)
    }
    fn finish(&mut self, _out: &mut Vec<StreamEvent>) {}
}
