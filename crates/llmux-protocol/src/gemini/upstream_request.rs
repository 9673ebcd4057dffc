//! Encode a canonical request for Gemini.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{REASONING_FORMAT, SKIP_SIGNATURE};
use crate::ProtocolError;
use crate::canonical::*;

pub struct EncodeOptions {
    /// Forward fields the canonical request does not model (never: no inbound speaks Gemini).
    pub forward_extra: bool,
}

fn unsupported(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::Unsupported(msg.into())
}

fn part(p: &Part, at: &str) -> Result<Value, ProtocolError> {
    Ok(match p {
        Part::Text { text, .. } => json!({"text": text}),
        Part::Image { source, .. } => match source {
            ImageSource::Base64 { media_type, data } => {
                json!({"inlineData": {"mimeType": media_type, "data": data}})
            }
            ImageSource::Url(u) => {
                let mime = if u.ends_with(".png") {
                    "image/png"
                } else if u.ends_with(".webp") {
                    "image/webp"
                } else if u.ends_with(".gif") {
                    "image/gif"
                } else {
                    "image/jpeg"
                };
                json!({"fileData": {"fileUri": u, "mimeType": mime}})
            }
        },
        Part::Raw(raw) if raw.protocol == Protocol::Gemini => raw.value.clone(),
        Part::Raw(raw) => {
            return Err(unsupported(format!(
                "{at}: content of type {:?} ({} format) cannot be sent to Gemini",
                raw.kind(),
                raw.protocol.name()
            )));
        }
    })
}

/// A tool result as Gemini wants it: an object (`{"result": ...}` unless the text already is one).
fn function_response(m: &Message) -> Value {
    let text = m.joined_text();
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Value::Object(o),
        Ok(other) => json!({"result": other}),
        Err(_) => json!({"result": text}),
    }
}

/// Encode the request body. The model goes in the URL, not the body.
pub fn encode_request(req: &ChatRequest, opts: &EncodeOptions) -> Result<Vec<u8>, ProtocolError> {
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let push = |role: &str, parts: Vec<Value>, contents: &mut Vec<Value>| {
        if parts.is_empty() {
            return;
        }
        if let Some(last) = contents.last_mut().filter(|c| c["role"] == role) {
            last["parts"].as_array_mut().expect("array").extend(parts);
        } else {
            contents.push(json!({"role": role, "parts": parts}));
        }
    };
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role {
            Role::System | Role::Developer => {
                for p in &m.content {
                    system.push(part(p, &at)?);
                }
            }
            Role::User => {
                let parts = m
                    .content
                    .iter()
                    .map(|p| part(p, &at))
                    .collect::<Result<Vec<_>, _>>()?;
                push("user", parts, &mut contents);
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let name = call_names.get(id).ok_or_else(|| {
                    ProtocolError::InvalidRequest(format!(
                        "{at}: tool result for unknown tool call {id:?}"
                    ))
                })?;
                push(
                    "user",
                    vec![
                        json!({"functionResponse": {"id": id, "name": name, "response": function_response(m)}}),
                    ],
                    &mut contents,
                );
            }
            Role::Assistant => {
                let sig_for = |id: Option<&str>| {
                    m.reasoning.iter().find_map(|b| match b {
                        ReasoningBlock::Encrypted {
                            data,
                            format,
                            id: bid,
                        } if format.as_deref() == Some(REASONING_FORMAT)
                            && bid.as_deref() == id =>
                        {
                            Some(data.clone())
                        }
                        _ => None,
                    })
                };
                let mut parts = Vec::new();
                for p in &m.content {
                    if matches!(p, Part::Text { text, .. } if text.is_empty()) {
                        continue;
                    }
                    parts.push(part(p, &at)?);
                }
                for c in &m.tool_calls {
                    call_names.insert(&c.id, &c.name);
                    let args: Value = if c.arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&c.arguments).map_err(|_| {
                            ProtocolError::InvalidRequest(format!(
                                "{at}: the arguments of tool call {} are not valid JSON",
                                c.id
                            ))
                        })?
                    };
                    let mut p = json!({"functionCall": {"id": c.id, "name": c.name, "args": args}});
                    p["thoughtSignature"] = sig_for(Some(&c.id))
                        .unwrap_or_else(|| SKIP_SIGNATURE.into())
                        .into();
                    parts.push(p);
                }
                // A signature not tied to a call belongs on the turn's first part.
                if let (Some(sig), Some(first)) = (sig_for(None), parts.first_mut())
                    && first.get("thoughtSignature").is_none()
                {
                    first["thoughtSignature"] = sig.into();
                }
                push("model", parts, &mut contents);
            }
        }
    }
    if contents.is_empty() {
        return Err(ProtocolError::InvalidRequest(
            "messages: Gemini needs at least one user or assistant message".into(),
        ));
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name, "description": t.description.clone().unwrap_or_default()});
                if let Some(p) = &t.parameters {
                    d["parametersJsonSchema"] = p.clone();
                }
                d
            })
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    if let Some(t) = req.raw_tools.first() {
        return Err(unsupported(format!(
            "tools: the {} tool of type {:?} is not supported by Gemini",
            t.protocol.name(),
            t.kind()
        )));
    }
    if let Some(tc) = &req.tool_choice {
        let cfg = match tc {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(n) => json!({"mode": "ANY", "allowedFunctionNames": [n]}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
    }
    let mut config = Map::new();
    let s = &req.sampling;
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            config.insert(k.into(), v);
        }
    };
    set("maxOutputTokens", req.max_tokens.map(Value::from));
    set("temperature", s.temperature.map(Value::from));
    set("topP", s.top_p.map(Value::from));
    set("topK", s.top_k.map(Value::from));
    set("seed", s.seed.map(Value::from));
    set("presencePenalty", s.presence_penalty.map(Value::from));
    set("frequencyPenalty", s.frequency_penalty.map(Value::from));
    set(
        "stopSequences",
        (!req.stop.is_empty()).then(|| json!(req.stop)),
    );
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            set("responseMimeType", Some("application/json".into()))
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            set("responseMimeType", Some("application/json".into()));
            set("responseJsonSchema", Some(schema.clone()));
        }
    }
    if let Some(r) = &req.reasoning {
        if r.is_on() {
            let budget = r.budget(req.max_tokens.unwrap_or(8192));
            set(
                "thinkingConfig",
                Some(json!({"includeThoughts": true, "thinkingBudget": budget})),
            );
        } else if r.enabled == Some(false) || r.effort == Some(Effort::None) {
            set("thinkingConfig", Some(json!({"thinkingBudget": 0})));
        }
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    if opts.forward_extra {
        for (k, v) in &req.extra {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    crate::json::to_vec(&Value::Object(body)).map_err(unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai;

    fn encode(body: &str) -> Result<Value, ProtocolError> {
        let req = openai::parse_request(body.as_bytes()).unwrap();
        encode_request(
            &req,
            &EncodeOptions {
                forward_extra: false,
            },
        )
        .map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn tool_round_trip_carries_signatures_and_names() {
        let v = encode(
            r#"{"model":"g","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get","arguments":"{}"}}],
             "reasoning_details":[{"type":"reasoning.encrypted","data":"SIG","id":"c1","format":"google-gemini-v1","index":0}]},
            {"role":"tool","tool_call_id":"c1","content":"Mexico"}],
            "tools":[{"type":"function","function":{"name":"get","parameters":{"type":"object"}}}],"max_tokens":50}"#,
        )
        .unwrap();
        assert_eq!(v["systemInstruction"]["parts"][0]["text"], "sys");
        let c = v["contents"].as_array().unwrap();
        assert_eq!(c[1]["role"], "model");
        assert_eq!(c[1]["parts"][0]["thoughtSignature"], "SIG");
        assert_eq!(c[1]["parts"][0]["functionCall"]["name"], "get");
        assert_eq!(c[2]["parts"][0]["functionResponse"]["name"], "get");
        assert_eq!(
            c[2]["parts"][0]["functionResponse"]["response"],
            json!({"result": "Mexico"})
        );
        assert_eq!(v["generationConfig"]["maxOutputTokens"], 50);
    }

    #[test]
    fn unknown_tool_result_is_refused() {
        let mut tool = Message::text(Role::Tool, "x");
        tool.tool_call_id = Some("nope".into());
        let req = ChatRequest {
            model: "g".into(),
            messages: vec![Message::text(Role::User, "hi"), tool],
            ..Default::default()
        };
        let e = encode_request(
            &req,
            &EncodeOptions {
                forward_extra: false,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown tool call"), "{e}");
        // Clients get the same answer earlier, from the parser.
        let e = openai::parse_request(
            br#"{"model":"g","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"nope","content":"x"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
