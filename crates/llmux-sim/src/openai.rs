//! The simulator's OpenAI chat-completions endpoint.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::script::{Finish, Script, SimMessage, SimRequest, SimTool, SimToolChoice};
use crate::server::{Frame, SimState, delayed_json, error_response, paced_sse, status_fault};

fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Reduce an OpenAI request to what the simulator's answer depends on.
pub(crate) fn parse(body: &Value) -> Result<SimRequest, String> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model: required")?
        .to_string();
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: required")?;
    let mut messages = Vec::new();
    for m in msgs {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("messages[].role: required")?;
        let mut text = m.get("content").map(text_of).unwrap_or_default();
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            for c in calls {
                let f = &c["function"];
                text.push_str(&format!(
                    " {} {}",
                    f["name"].as_str().unwrap_or(""),
                    f["arguments"].as_str().unwrap_or("")
                ));
            }
        }
        messages.push(SimMessage {
            role: role.to_string(),
            text,
        });
    }
    let tools = body
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    Some(SimTool {
                        name: t["function"]["name"].as_str()?.to_string(),
                        parameters: t["function"]
                            .get("parameters")
                            .cloned()
                            .unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let tool_choice = match body.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => SimToolChoice::None,
        Some(Value::String(s)) if s == "required" => SimToolChoice::Required,
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| SimToolChoice::Named(n.to_string()))
            .unwrap_or_default(),
        _ => SimToolChoice::Auto,
    };
    let max_tokens = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let reasoning = body
        .get("reasoning_effort")
        .and_then(Value::as_str)
        .is_some_and(|e| e != "none")
        || body.get("reasoning").is_some_and(|r| {
            r.get("enabled").and_then(Value::as_bool) != Some(false)
                && r.get("effort").and_then(Value::as_str) != Some("none")
        });
    Ok(SimRequest {
        model,
        last_is_tool_result: messages.last().is_some_and(|m| m.role == "tool"),
        messages,
        tools,
        tool_choice,
        max_tokens,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        reasoning,
    })
}

fn finish_str(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

fn usage(s: &Script) -> Value {
    let completion = s.completion_tokens();
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": s.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": s.reasoning_tokens()},
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn complete(s: &Script, model: &str, with_usage: bool) -> Vec<u8> {
    let mut message = json!({"role": "assistant", "content": null, "refusal": null});
    if !s.text.is_empty() {
        message["content"] = s.text().into();
    }
    if !s.reasoning.is_empty() {
        message["reasoning_content"] = s.reasoning_text().into();
    }
    if !s.tool_calls.is_empty() {
        message["tool_calls"] = s
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments()}}))
            .collect();
    }
    let mut body = json!({
        "id": format!("chatcmpl-{}", s.id),
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "system_fingerprint": "fp_sim",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_str(s.finish)}],
    });
    if with_usage {
        body["usage"] = usage(s);
    }
    serde_json::to_vec(&body).expect("json")
}

fn frames(s: &Script, model: &str, with_usage: bool) -> Vec<Frame> {
    let id = format!("chatcmpl-{}", s.id);
    let created = now();
    let chunk = |delta: Value, finish: Option<&str>| -> Bytes {
        let c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "fp_sim",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Bytes::from(format!("data: {c}\n\n"))
    };
    let mut out = Vec::new();
    let mut first = true;
    let mut role = |d: &mut Value| {
        if first {
            first = false;
            d["role"] = "assistant".into();
        }
    };
    for t in &s.reasoning {
        let mut d = json!({"content": null, "reasoning_content": t});
        role(&mut d);
        out.push(Frame::token(chunk(d, None)));
    }
    for t in &s.text {
        let mut d = json!({"content": t});
        role(&mut d);
        out.push(Frame::token(chunk(d, None)));
    }
    for (i, c) in s.tool_calls.iter().enumerate() {
        let mut d = json!({"tool_calls": [{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]});
        role(&mut d);
        out.push(Frame::token(chunk(d, None)));
        for p in &c.pieces {
            out.push(Frame::token(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}),
                None,
            )));
        }
    }
    out.push(Frame::meta(chunk(json!({}), Some(finish_str(s.finish)))));
    if with_usage {
        let c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage(s),
        });
        out.push(Frame::meta(format!("data: {c}\n\n")));
    }
    out.push(Frame::meta(Bytes::from_static(b"data: [DONE]\n\n")));
    out
}

pub(crate) async fn chat(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = state.admit("/v1/chat/completions", &headers, &body, || {
        error_response(
            StatusCode::UNAUTHORIZED,
            None,
            error_body("Incorrect API key provided.", "invalid_request_error"),
        )
    }) {
        return r;
    }
    let parsed = serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| parse(&v).map(|r| (v, r)));
    let (raw, req) = match parsed {
        Ok(x) => x,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                None,
                error_body(&e, "invalid_request_error"),
            );
        }
    };
    let d = state.directives(&req.model);
    if let Some((status, retry_after)) = status_fault(&d) {
        return error_response(
            status,
            retry_after,
            error_body(
                &format!("simulated error {}", status.as_u16()),
                "server_error",
            ),
        );
    }
    let script = state.plan(&req, &d);
    if req.stream {
        let include_usage = raw
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        paced_sse(frames(&script, &req.model, include_usage && d.usage), &d)
    } else {
        delayed_json(
            complete(&script, &req.model, d.usage),
            script.completion_tokens(),
            &d,
        )
        .await
    }
}
