//! Encode a canonical request for Anthropic's Messages API.

use serde_json::{Map, Value, json};

use super::REASONING_FORMAT;
use crate::ProtocolError;
use crate::canonical::*;

pub struct EncodeOptions<'a> {
    /// Anthropic's name for the model.
    pub model: &'a str,
    pub stream: bool,
    /// `max_tokens` is required by Anthropic; used when the request sets none.
    pub default_max_tokens: u32,
    /// Forward fields the canonical request does not model (the client spoke Anthropic too).
    pub forward_extra: bool,
}

fn unsupported(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::Unsupported(msg.into())
}

fn cache_control(cc: &Option<CacheControl>) -> Option<Value> {
    cc.as_ref().map(|c| match &c.ttl {
        Some(ttl) => json!({"type": "ephemeral", "ttl": ttl}),
        None => json!({"type": "ephemeral"}),
    })
}

fn with_cache(mut block: Value, cc: &Option<CacheControl>) -> Value {
    if let Some(c) = cache_control(cc) {
        block["cache_control"] = c;
    }
    block
}

fn part_block(p: &Part, at: &str) -> Result<Value, ProtocolError> {
    Ok(match p {
        Part::Text {
            text,
            cache_control,
        } => with_cache(json!({"type": "text", "text": text}), cache_control),
        Part::Image {
            source,
            cache_control,
            ..
        } => {
            let src = match source {
                ImageSource::Base64 { media_type, data } => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                ImageSource::Url(u) => json!({"type": "url", "url": u}),
            };
            with_cache(json!({"type": "image", "source": src}), cache_control)
        }
        Part::Raw(raw) if raw.protocol == Protocol::Anthropic => raw.value.clone(),
        Part::Raw(raw) => {
            return Err(unsupported(format!(
                "{at}: content of type {:?} ({} format) cannot be sent to Anthropic",
                raw.kind(),
                raw.protocol.name()
            )));
        }
    })
}

/// Anthropic's thinking blocks for the reasoning an assistant turn carried. Only Anthropic's
/// own (signed) reasoning can go back; other providers' is dropped.
fn thinking_blocks(reasoning: &[ReasoningBlock]) -> Vec<Value> {
    let ours = |f: &Option<String>| f.as_deref().is_none_or(|f| f == REASONING_FORMAT);
    reasoning
        .iter()
        .filter_map(|b| match b {
            ReasoningBlock::Text {
                text,
                signature: Some(sig),
                format,
            } if ours(format) => {
                Some(json!({"type": "thinking", "thinking": text, "signature": sig}))
            }
            ReasoningBlock::Encrypted {
                data,
                format,
                id: None,
            } if ours(format) => Some(json!({"type": "redacted_thinking", "data": data})),
            _ => None,
        })
        .collect()
}

/// Encode the request body.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions<'_>,
) -> Result<Vec<u8>, ProtocolError> {
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let push = |role: &str, blocks: Vec<Value>, messages: &mut Vec<Value>| {
        if blocks.is_empty() {
            return;
        }
        // Consecutive turns of one role are one turn (parallel tool results must share one).
        if let Some(last) = messages.last_mut().filter(|m| m["role"] == role) {
            last["content"]
                .as_array_mut()
                .expect("array")
                .extend(blocks);
        } else {
            messages.push(json!({"role": role, "content": blocks}));
        }
    };
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role {
            Role::System | Role::Developer => {
                for p in &m.content {
                    system.push(part_block(p, &at)?);
                }
            }
            Role::User => {
                let blocks = m
                    .content
                    .iter()
                    .map(|p| part_block(p, &at))
                    .collect::<Result<Vec<_>, _>>()?;
                push("user", blocks, &mut messages);
            }
            Role::Tool => {
                let content = m
                    .content
                    .iter()
                    .map(|p| part_block(p, &at))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": content,
                });
                if m.is_error {
                    block["is_error"] = true.into();
                }
                push("user", vec![block], &mut messages);
            }
            Role::Assistant => {
                let mut blocks = thinking_blocks(&m.reasoning);
                for p in &m.content {
                    if matches!(p, Part::Text { text, .. } if text.is_empty()) {
                        continue;
                    }
                    blocks.push(part_block(p, &at)?);
                }
                for c in &m.tool_calls {
                    let input: Value = if c.arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&c.arguments).map_err(|_| {
                            ProtocolError::InvalidRequest(format!(
                                "{at}: the arguments of tool call {} are not valid JSON",
                                c.id
                            ))
                        })?
                    };
                    let mut b =
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input});
                    if opts.forward_extra {
                        super::blocks::merge_tool_use_extra(&mut b, c.extra.as_ref());
                    }
                    blocks.push(b);
                }
                push("assistant", blocks, &mut messages);
            }
        }
    }
    if messages.is_empty() {
        return Err(ProtocolError::InvalidRequest(
            "messages: Anthropic needs at least one user or assistant message".into(),
        ));
    }

    let mut body = Map::new();
    body.insert("model".into(), opts.model.into());
    let mut max_tokens = req.max_tokens.unwrap_or(opts.default_max_tokens);
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    let thinking_on = req.reasoning.as_ref().is_some_and(ReasoningConfig::is_on);
    if let Some(r) = &req.reasoning {
        if thinking_on {
            let budget = r.budget(max_tokens);
            if budget >= max_tokens {
                // Anthropic needs room for the answer after the thinking budget.
                max_tokens = budget + max_tokens.max(1024);
            }
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": budget}),
            );
        } else if r.enabled == Some(false) {
            body.insert("thinking".into(), json!({"type": "disabled"}));
        }
    }
    body.insert("max_tokens".into(), max_tokens.into());
    if opts.stream {
        body.insert("stream".into(), true.into());
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    // With thinking on, Anthropic accepts no temperature or top_k.
    if !thinking_on {
        if let Some(t) = req.sampling.temperature {
            body.insert("temperature".into(), t.into());
        }
        if let Some(k) = req.sampling.top_k {
            body.insert("top_k".into(), k.into());
        }
    }
    if let Some(p) = req.sampling.top_p {
        body.insert("top_p".into(), p.into());
    }
    let mut tools: Vec<Value> = Vec::new();
    for t in &req.tools {
        let mut v = json!({
            "name": t.name,
            "input_schema": t.parameters.clone().unwrap_or_else(|| json!({"type": "object"})),
        });
        if let Some(d) = &t.description {
            v["description"] = d.clone().into();
        }
        if let Some(s) = t.strict {
            v["strict"] = s.into();
        }
        if let Some(c) = cache_control(&t.cache_control) {
            v["cache_control"] = c;
        }
        if opts.forward_extra {
            for (k, x) in &t.extra {
                v[k] = x.clone();
            }
        }
        tools.push(v);
    }
    for t in &req.raw_tools {
        if t.protocol != Protocol::Anthropic {
            return Err(unsupported(format!(
                "tools: the {} tool of type {:?} is not supported by Anthropic",
                t.protocol.name(),
                t.kind()
            )));
        }
        tools.push(t.value.clone());
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = req.tool_choice.as_ref().map(|tc| match tc {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Function(n) => json!({"type": "tool", "name": n}),
    });
    if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = true.into();
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(_) => {
            return Err(unsupported(
                "response_format: JSON output modes are not supported by Anthropic upstreams",
            ));
        }
    }
    if let Some(u) = &req.user {
        body.insert("metadata".into(), json!({"user_id": u}));
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

    fn encode(body: &str) -> Value {
        let req = openai::parse_request(body.as_bytes()).unwrap();
        let out = encode_request(
            &req,
            &EncodeOptions {
                model: "claude-x",
                stream: false,
                default_max_tokens: 4096,
                forward_extra: false,
            },
        )
        .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn hoists_system_and_groups_tool_results() {
        let v = encode(
            r#"{"model":"a/b","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},
                                                             {"id":"b","type":"function","function":{"name":"f","arguments":"{\"x\":2}"}}]},
            {"role":"tool","tool_call_id":"a","content":"1"},{"role":"tool","tool_call_id":"b","content":"2"}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required","parallel_tool_calls":false}"#,
        );
        assert_eq!(v["system"][0]["text"], "be brief");
        assert_eq!(v["max_tokens"], 4096);
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1]["content"][1]["input"], json!({"x": 2}));
        assert_eq!(msgs[2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(msgs[2]["content"][1]["tool_use_id"], "b");
        assert_eq!(v["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(
            v["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn thinking_budget_and_refusals() {
        let v = encode(
            r#"{"model":"a/b","max_tokens":1000,"temperature":0.3,"reasoning":{"effort":"high"},"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(v["thinking"]["type"], "enabled");
        let budget = v["thinking"]["budget_tokens"].as_u64().unwrap();
        assert!(v["max_tokens"].as_u64().unwrap() > budget);
        assert!(v.get("temperature").is_none());
        let req = openai::parse_request(
            br#"{"model":"a/b","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#,
        )
        .unwrap();
        let opts = EncodeOptions {
            model: "m",
            stream: false,
            default_max_tokens: 10,
            forward_extra: false,
        };
        assert!(matches!(
            encode_request(&req, &opts),
            Err(ProtocolError::Unsupported(_))
        ));
    }
}
