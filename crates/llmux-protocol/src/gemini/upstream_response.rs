//! Decode Gemini responses (whole, or each chunk of a stream) into canonical events.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

use super::REASONING_FORMAT;
use crate::ProtocolError;
use crate::canonical::*;

/// Normalize a Gemini `finishReason`.
fn normalize(native: &str, called_tools: bool) -> FinishReason {
    match native {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => FinishReason::Error,
        _ if called_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Decoder state: Gemini streams send whole parts per chunk and cumulative usage.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    tools: usize,
    finished: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode one response chunk (a stream event's data, or the whole non-streamed body).
    pub fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), ProtocolError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ProtocolError::upstream(format!("malformed Gemini response: {e}")))?;
        if let Some(e) = v.get("error") {
            out.push(StreamEvent::Error(StreamError {
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error")
                    .to_string(),
                code: e.get("status").and_then(Value::as_str).map(str::to_string),
            }));
            return Ok(());
        }
        let response_id = v
            .get("responseId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: Some(response_id.clone()).filter(|s| !s.is_empty()),
                model: v
                    .get("modelVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        if let Some(reason) = v
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str)
        {
            self.finished = true;
            out.push(StreamEvent::Finish(Finish {
                reason: FinishReason::ContentFilter,
                native: Some(reason.to_string()),
            }));
        }
        if let Some(cand) = v.get("candidates").and_then(|c| c.get(0)) {
            for p in cand
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.part(p, &response_id, out);
            }
            if let Some(reason) = cand.get("finishReason").and_then(Value::as_str)
                && !self.finished
            {
                self.finished = true;
                out.push(StreamEvent::Finish(Finish {
                    reason: normalize(reason, self.tools > 0),
                    native: Some(reason.to_string()),
                }));
            }
        }
        if let Some(u) = v.get("usageMetadata") {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            let thoughts = n("thoughtsTokenCount");
            out.push(StreamEvent::Usage(Usage {
                prompt_tokens: n("promptTokenCount") + n("toolUsePromptTokenCount"),
                completion_tokens: n("candidatesTokenCount") + thoughts,
                cached_tokens: n("cachedContentTokenCount"),
                cache_write_tokens: 0,
                reasoning_tokens: thoughts,
                upstream_cost: None,
            }));
        }
        Ok(())
    }

    fn part(&mut self, p: &Value, response_id: &str, out: &mut Vec<StreamEvent>) {
        let signature = p
            .get("thoughtSignature")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(fc) = p.get("functionCall") {
            let index = self.tools;
            self.tools += 1;
            let id = fc
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| {
                    let mut h = DefaultHasher::new();
                    (response_id, index, fc.to_string()).hash(&mut h);
                    format!("call_{:016x}", h.finish())
                });
            out.push(StreamEvent::ToolCallStart {
                index,
                id: id.clone(),
                name: fc
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                extra: None,
            });
            let args = fc
                .get("args")
                .cloned()
                .unwrap_or(Value::Object(Default::default()));
            out.push(StreamEvent::ToolCallArgs {
                index,
                arguments: args.to_string(),
            });
            out.push(StreamEvent::ToolCallEnd { index });
            if let Some(sig) = signature {
                out.push(StreamEvent::Reasoning(ReasoningBlock::Encrypted {
                    data: sig,
                    format: Some(REASONING_FORMAT.into()),
                    id: Some(id),
                }));
            }
            return;
        }
        if let Some(text) = p.get("text").and_then(Value::as_str) {
            if p.get("thought").and_then(Value::as_bool) == Some(true) {
                if !text.is_empty() {
                    out.push(StreamEvent::Reasoning(ReasoningBlock::Text {
                        text: text.to_string(),
                        signature: None,
                        format: Some(REASONING_FORMAT.into()),
                    }));
                }
            } else if !text.is_empty() {
                out.push(StreamEvent::Text(text.to_string()));
            }
            if let Some(sig) = signature {
                out.push(StreamEvent::Reasoning(ReasoningBlock::Encrypted {
                    data: sig,
                    format: Some(REASONING_FORMAT.into()),
                    id: None,
                }));
            }
            return;
        }
        out.push(StreamEvent::Raw(RawItem {
            protocol: Protocol::Gemini,
            value: p.clone(),
        }));
    }
}

/// Decode a complete `generateContent` response.
pub fn decode_response(body: &[u8]) -> Result<Vec<StreamEvent>, ProtocolError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ProtocolError::upstream("response is not UTF-8"))?;
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::upstream(format!("malformed Gemini response: {e}")))?;
    if v.get("candidates")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
        && v.pointer("/promptFeedback/blockReason").is_none()
        && v.get("error").is_none()
    {
        return Err(ProtocolError::upstream("response has no candidates"));
    }
    let mut out = Vec::new();
    let mut d = StreamDecoder::new();
    d.decode(text, &mut out)?;
    if let Some(StreamEvent::Error(e)) = out.iter().find(|e| matches!(e, StreamEvent::Error(_))) {
        return Err(ProtocolError::upstream(format!(
            "upstream reported an error: {}",
            e.message
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_call_with_signature_and_usage() {
        let ev = decode_response(
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_country","args":{}},"thoughtSignature":"SIG"}],"role":"model"},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":29,"candidatesTokenCount":10,"thoughtsTokenCount":202,"cachedContentTokenCount":4},"responseId":"r1","modelVersion":"gemini-3"}"#,
        )
        .unwrap();
        let mut b = ResponseBuilder::new();
        for e in &ev {
            b.push(e);
        }
        let r = b.finish_response();
        assert_eq!(r.tool_calls[0].name, "get_country");
        assert_eq!(r.finish.as_ref().unwrap().reason, FinishReason::ToolCalls);
        assert_eq!(r.finish.unwrap().native.as_deref(), Some("STOP"));
        let id = r.tool_calls[0].id.clone();
        assert_eq!(
            r.reasoning[0],
            ReasoningBlock::Encrypted {
                data: "SIG".into(),
                format: Some(REASONING_FORMAT.into()),
                id: Some(id)
            }
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.reasoning_tokens,
                u.cached_tokens
            ),
            (29, 212, 202, 4)
        );
    }

    #[test]
    fn thoughts_are_reasoning() {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        d.decode(
            r#"{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true}]}}]}"#,
            &mut out,
        )
        .unwrap();
        d.decode(
            r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"MAX_TOKENS"}]}"#,
            &mut out,
        )
        .unwrap();
        assert!(
            matches!(&out[1], StreamEvent::Reasoning(ReasoningBlock::Text { text, .. }) if text == "hmm")
        );
        assert_eq!(out[2], StreamEvent::Text("Hi".into()));
        assert!(matches!(&out[3], StreamEvent::Finish(f) if f.reason == FinishReason::Length));
    }
}
