//! The simulator's Gemini endpoints: `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`. Like Gemini 3, with thinking on it refuses a model turn
//! whose function call does not carry back its thought signature.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::script::{
    Finish, Script, SimMessage, SimRequest, SimTool, SimToolChoice, signature_for,
};
use crate::server::{Frame, SimState, delayed_json, error_response, paced_sse, status_fault};

const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

fn error(status: StatusCode, message: &str) -> Response {
    let s = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 | 403 => "PERMISSION_DENIED",
        429 => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    };
    error_response(
        status,
        None,
        json!({"error": {"code": status.as_u16(), "message": message, "status": s}}),
    )
}

fn part_text(p: &Value) -> String {
    if let Some(t) = p["text"].as_str() {
        return t.to_string();
    }
    if let Some(fc) = p.get("functionCall") {
        return format!("{} {}", fc["name"].as_str().unwrap_or_default(), fc["args"]);
    }
    if let Some(fr) = p.get("functionResponse") {
        // A result wrapped as `{"result": ...}` reads as the result itself.
        return match fr["response"].get("result") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => fr["response"].to_string(),
        };
    }
    String::new()
}

fn parse(model: &str, body: &Value) -> Result<SimRequest, String> {
    let contents = body["contents"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or("contents is not specified")?;
    let thinking = &body["generationConfig"]["thinkingConfig"];
    let reasoning = thinking["includeThoughts"].as_bool() == Some(true)
        || thinking["thinkingBudget"].as_u64().is_some_and(|b| b > 0);
    let mut messages = Vec::new();
    if let Some(parts) = body["systemInstruction"]["parts"].as_array() {
        messages.push(SimMessage {
            role: "system".into(),
            text: parts.iter().map(part_text).collect::<Vec<_>>().join(" "),
        });
    }
    let mut last_is_tool_result = false;
    for (i, c) in contents.iter().enumerate() {
        let parts = c["parts"]
            .as_array()
            .ok_or(format!("contents[{i}].parts is required"))?;
        let role = c["role"].as_str().unwrap_or("user");
        if role == "model"
            && reasoning
            && let Some(fc) = parts.iter().find(|p| p.get("functionCall").is_some())
        {
            let sig = fc["thoughtSignature"].as_str().unwrap_or_default();
            let ours = parts
                .iter()
                .filter(|p| p["thought"].as_bool() == Some(true))
                .map(part_text)
                .collect::<String>();
            if sig.is_empty() {
                return Err(format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, \
                         and missing thought_signature may lead to degraded model performance. (contents[{i}])"
                ));
            }
            if sig != SKIP_SIGNATURE && !sig.starts_with("simsig-") && sig != signature_for(&ours) {
                return Err(format!("contents[{i}]: invalid thought signature"));
            }
        }
        last_is_tool_result = parts.iter().any(|p| p.get("functionResponse").is_some());
        messages.push(SimMessage {
            role: match (role, last_is_tool_result) {
                ("model", _) => "assistant".into(),
                (_, true) => "tool".into(),
                _ => "user".into(),
            },
            text: parts.iter().map(part_text).collect::<Vec<_>>().join(" "),
        });
    }
    let tools = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            t["functionDeclarations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| {
            Some(SimTool {
                name: d["name"].as_str()?.to_string(),
                parameters: d
                    .get("parametersJsonSchema")
                    .or_else(|| d.get("parameters_json_schema"))
                    .or_else(|| d.get("parameters"))
                    .cloned()
                    .unwrap_or(json!({})),
            })
        })
        .collect();
    let cfg = &body["toolConfig"]["functionCallingConfig"];
    let tool_choice = match cfg["mode"].as_str() {
        Some("NONE") => SimToolChoice::None,
        Some("ANY") => match cfg["allowedFunctionNames"].get(0).and_then(Value::as_str) {
            Some(n) => SimToolChoice::Named(n.to_string()),
            None => SimToolChoice::Required,
        },
        _ => SimToolChoice::Auto,
    };
    Ok(SimRequest {
        model: model.to_string(),
        messages,
        tools,
        tool_choice,
        max_tokens: body["generationConfig"]["maxOutputTokens"]
            .as_u64()
            .map(|n| n as usize),
        stream: false,
        reasoning,
        last_is_tool_result,
    })
}

fn usage(s: &Script) -> Value {
    let thoughts = s.reasoning_tokens();
    let candidates = s.completion_tokens() - thoughts;
    let mut u = json!({
        "promptTokenCount": s.prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": s.prompt_tokens + candidates + thoughts,
    });
    if thoughts > 0 {
        u["thoughtsTokenCount"] = thoughts.into();
    }
    if s.cached_tokens > 0 {
        u["cachedContentTokenCount"] = s.cached_tokens.into();
    }
    u
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Length => "MAX_TOKENS",
        Finish::Stop | Finish::ToolCalls => "STOP",
    }
}

fn call_parts(s: &Script) -> Vec<Value> {
    s.tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let args: Value = serde_json::from_str(&c.arguments()).unwrap_or(json!({}));
            let mut p = json!({"functionCall": {"name": c.name, "args": args}});
            if i == 0 && !s.reasoning.is_empty() {
                p["thoughtSignature"] = s.signature().into();
            }
            p
        })
        .collect()
}

fn response(parts: Vec<Value>, finish: Option<&str>, s: &Script, model: &str) -> Value {
    let mut cand = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(f) = finish {
        cand["finishReason"] = f.into();
    }
    json!({"candidates": [cand], "usageMetadata": usage(s), "modelVersion": model, "responseId": s.id})
}

fn complete(s: &Script, model: &str) -> Vec<u8> {
    let mut parts = Vec::new();
    if !s.reasoning.is_empty() {
        parts.push(json!({"text": s.reasoning_text(), "thought": true}));
    }
    if !s.text.is_empty() {
        parts.push(json!({"text": s.text()}));
    }
    parts.extend(call_parts(s));
    serde_json::to_vec(&response(parts, Some(finish_reason(s.finish)), s, model)).expect("json")
}

fn frames(s: &Script, model: &str) -> Vec<Frame> {
    let data = |v: Value| Bytes::from(format!("data: {v}\n\n"));
    let mut out = Vec::new();
    for t in &s.reasoning {
        out.push(Frame::token(data(response(
            vec![json!({"text": t, "thought": true})],
            None,
            s,
            model,
        ))));
    }
    for t in &s.text {
        out.push(Frame::token(data(response(
            vec![json!({"text": t})],
            None,
            s,
            model,
        ))));
    }
    let calls = call_parts(s);
    if !calls.is_empty() {
        out.push(Frame::token(data(response(calls, None, s, model))));
    }
    out.push(Frame::meta(data(response(
        vec![json!({"text": ""})],
        Some(finish_reason(s.finish)),
        s,
        model,
    ))));
    out
}

pub(crate) async fn generate(
    State(state): State<Arc<SimState>>,
    Path(target): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, method) = target.split_once(':').unwrap_or((target.as_str(), ""));
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return error(StatusCode::NOT_FOUND, &format!("unknown method {method}")),
    };
    let mut headers = headers;
    if let Some(k) = q.get("key")
        && let Ok(v) = k.parse()
    {
        headers.insert("x-goog-api-key", v);
    }
    if let Some(r) = state.admit(&format!("/v1beta/models/{target}"), &headers, &body, || {
        error(
            StatusCode::FORBIDDEN,
            "API key not valid. Please pass a valid API key.",
        )
    }) {
        return r;
    }
    let req = match serde_json::from_slice::<Value>(&body)
        .map_err(|e| format!("Invalid JSON payload received. {e}"))
        .and_then(|v| parse(model, &v))
    {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let d = state.directives(&req.model);
    if let Some((status, retry_after)) = status_fault(&d) {
        let mut r = error(status, &format!("simulated error {}", status.as_u16()));
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        return r;
    }
    let script = state.plan(&req, &d);
    if stream {
        if q.get("alt").map(String::as_str) != Some("sse") {
            return error(
                StatusCode::BAD_REQUEST,
                "this simulator streams only with alt=sse",
            );
        }
        paced_sse(frames(&script, model), &d)
    } else {
        delayed_json(complete(&script, model), script.completion_tokens(), &d).await
    }
}
