//! The simulator's Anthropic Messages endpoint (`POST /v1/messages`). Like Anthropic, it
//! checks that thinking blocks come back signed when thinking is on and tools were used, and
//! that tool results answer tool uses.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::script::{
    Finish, Script, SimMessage, SimRequest, SimTool, SimToolChoice, signature_for,
};
use crate::server::{Frame, SimState, delayed_json, error_response, paced_sse, status_fault};

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    error_response(
        status,
        None,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

fn block_text(b: &Value) -> String {
    match b.get("type").and_then(Value::as_str) {
        Some("text") => b["text"].as_str().unwrap_or_default().to_string(),
        Some("tool_use") => format!("{} {}", b["name"].as_str().unwrap_or_default(), b["input"]),
        Some("tool_result") => match &b["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// Check the rules Anthropic enforces on multi-turn requests, then reduce the request.
fn parse(body: &Value) -> Result<SimRequest, String> {
    let model = body["model"]
        .as_str()
        .ok_or("model: Field required")?
        .to_string();
    let max_tokens = body["max_tokens"]
        .as_u64()
        .ok_or("max_tokens: Field required")?;
    let msgs = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("messages: Field required")?;
    let thinking = matches!(
        body["thinking"]["type"].as_str(),
        Some("enabled" | "adaptive")
    );
    let mut messages = Vec::new();
    if let Some(sys) = body.get("system") {
        let text = match sys {
            Value::String(s) => s.clone(),
            Value::Array(b) => b.iter().map(block_text).collect::<Vec<_>>().join(" "),
            _ => String::new(),
        };
        messages.push(SimMessage {
            role: "system".into(),
            text,
        });
    }
    let mut last_tool_uses: Vec<String> = Vec::new();
    let mut last_is_tool_result = false;
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"]
            .as_str()
            .ok_or(format!("messages.{i}.role: Field required"))?;
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid list"
                ));
            }
        };
        if role == "assistant" {
            let uses: Vec<String> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str().map(str::to_string))
                .collect();
            if thinking && !uses.is_empty() {
                match blocks.first() {
                    Some(b) if b["type"] == "thinking" => {
                        let sig = b["signature"].as_str().unwrap_or_default();
                        if sig != signature_for(b["thinking"].as_str().unwrap_or_default()) {
                            return Err(format!(
                                "messages.{i}.content.0: Invalid `signature` in `thinking` block"
                            ));
                        }
                    }
                    Some(b) if b["type"] == "redacted_thinking" => {}
                    Some(b) => {
                        return Err(format!(
                            "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{}`. \
                             When `thinking` is enabled, a final `assistant` message must start with a thinking block",
                            b["type"].as_str().unwrap_or("?")
                        ));
                    }
                    None => return Err(format!("messages.{i}.content: must not be empty")),
                }
            }
            last_tool_uses = uses;
        } else {
            let results: Vec<&str> = blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .filter_map(|b| b["tool_use_id"].as_str())
                .collect();
            for r in &results {
                if !last_tool_uses.iter().any(|u| u == r) {
                    return Err(format!(
                        "messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {r}. \
                         Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    ));
                }
            }
            last_is_tool_result = !results.is_empty();
        }
        let text = blocks.iter().map(block_text).collect::<Vec<_>>().join(" ");
        messages.push(SimMessage {
            role: if last_is_tool_result && role == "user" {
                "tool".into()
            } else {
                role.to_string()
            },
            text,
        });
    }
    let tools = body["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t.get("type").is_none() || t["type"] == "custom")
                .filter_map(|t| {
                    Some(SimTool {
                        name: t["name"].as_str()?.to_string(),
                        parameters: t.get("input_schema").cloned().unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let tool_choice = match body["tool_choice"]["type"].as_str() {
        Some("none") => SimToolChoice::None,
        Some("any") => SimToolChoice::Required,
        Some("tool") => SimToolChoice::Named(
            body["tool_choice"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        _ => SimToolChoice::Auto,
    };
    Ok(SimRequest {
        model,
        messages,
        tools,
        tool_choice,
        max_tokens: Some(max_tokens as usize),
        stream: body["stream"].as_bool().unwrap_or(false),
        reasoning: thinking,
        last_is_tool_result,
    })
}

fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
    }
}

fn usage(s: &Script) -> Value {
    json!({
        "input_tokens": s.prompt_tokens - s.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": s.cached_tokens,
        "output_tokens": s.completion_tokens(),
    })
}

fn complete(s: &Script, model: &str) -> Vec<u8> {
    let mut content = Vec::new();
    if !s.reasoning.is_empty() {
        content.push(
            json!({"type": "thinking", "thinking": s.reasoning_text(), "signature": s.signature()}),
        );
    }
    if !s.text.is_empty() {
        content.push(json!({"type": "text", "text": s.text()}));
    }
    for c in &s.tool_calls {
        let input: Value = serde_json::from_str(&c.arguments()).unwrap_or(json!({}));
        content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
    }
    let v = json!({
        "id": format!("msg_{}", s.id), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason(s.finish), "stop_sequence": null, "usage": usage(s),
    });
    serde_json::to_vec(&v).expect("json")
}

fn event(name: &str, v: Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

fn frames(s: &Script, model: &str) -> Vec<Frame> {
    let mut out = vec![
        Frame::meta(event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": format!("msg_{}", s.id), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": s.prompt_tokens - s.cached_tokens, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": s.cached_tokens, "output_tokens": 1},
            }}),
        )),
        Frame::meta(event("ping", json!({"type": "ping"}))),
    ];
    let mut index = 0;
    let start = |index: usize, block: Value| {
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        )
    };
    let delta = |index: usize, d: Value| {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": d}),
        )
    };
    let stop = |index: usize| {
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        )
    };
    if !s.reasoning.is_empty() {
        out.push(Frame::meta(start(
            index,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        )));
        for t in &s.reasoning {
            out.push(Frame::token(delta(
                index,
                json!({"type": "thinking_delta", "thinking": t}),
            )));
        }
        out.push(Frame::meta(delta(
            index,
            json!({"type": "signature_delta", "signature": s.signature()}),
        )));
        out.push(Frame::meta(stop(index)));
        index += 1;
    }
    if !s.text.is_empty() {
        out.push(Frame::meta(start(
            index,
            json!({"type": "text", "text": ""}),
        )));
        for t in &s.text {
            out.push(Frame::token(delta(
                index,
                json!({"type": "text_delta", "text": t}),
            )));
        }
        out.push(Frame::meta(stop(index)));
        index += 1;
    }
    for c in &s.tool_calls {
        out.push(Frame::token(start(
            index,
            json!({"type": "tool_use", "id": c.id, "name": c.name, "input": {}}),
        )));
        for p in &c.pieces {
            out.push(Frame::token(delta(
                index,
                json!({"type": "input_json_delta", "partial_json": p}),
            )));
        }
        out.push(Frame::meta(stop(index)));
        index += 1;
    }
    out.push(Frame::meta(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(s.finish), "stop_sequence": null},
               "usage": {"output_tokens": s.completion_tokens()}}),
    )));
    out.push(Frame::meta(event(
        "message_stop",
        json!({"type": "message_stop"}),
    )));
    out
}

pub(crate) async fn messages(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = state.admit("/v1/messages", &headers, &body, || {
        error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
        )
    }) {
        return r;
    }
    if headers.get("anthropic-version").is_none() {
        return invalid("anthropic-version: header is required");
    }
    let req = match serde_json::from_slice::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| parse(&v))
    {
        Ok(r) => r,
        Err(e) => return invalid(&e),
    };
    let d = state.directives(&req.model);
    if let Some((status, retry_after)) = status_fault(&d) {
        return error_response(
            status,
            retry_after,
            json!({"type": "error", "error": {"type": "api_error", "message": format!("simulated error {}", status.as_u16())}}),
        );
    }
    let script = state.plan(&req, &d);
    if req.stream {
        paced_sse(frames(&script, &req.model), &d)
    } else {
        delayed_json(
            complete(&script, &req.model),
            script.completion_tokens(),
            &d,
        )
        .await
    }
}
