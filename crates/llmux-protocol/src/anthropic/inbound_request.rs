//! Parse an Anthropic Messages request (as the Anthropic SDK and tools built on it send it)
//! into the canonical request.

use std::fmt::Display;

use serde_json::{Map, Value};

use super::REASONING_FORMAT;
use super::blocks::{redacted_to_reasoning, tool_use_extra};
use crate::ProtocolError;
use crate::canonical::*;
use crate::error::{Path, parse_json, take_field};

fn invalid(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidRequest(msg.into())
}

/// Take a required string out of a block (moved, not copied: system prompts, texts and tool
/// results are most of a long request's bytes).
fn take_text(
    b: &mut Map<String, Value>,
    key: &str,
    at: &dyn Display,
) -> Result<String, ProtocolError> {
    match b.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(invalid(format!("{at}.{key}: required"))),
    }
}

/// Fields that mean something to llmux itself (or nothing upstream) and are never forwarded.
const GATEWAY_ONLY: &[&str] = &[
    "transforms",
    "usage",
    "plugins",
    "preset",
    "debug",
    "anthropic_version",
];

/// Parse a request body.
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, ProtocolError> {
    let v: Value = parse_json(body).map_err(ProtocolError::InvalidRequest)?;
    let Value::Object(mut o) = v else {
        return Err(invalid("expected a messages request object"));
    };
    let models: Vec<String> = take_field(&mut o, "models")?.unwrap_or_default();
    let model = match take_field::<String>(&mut o, "model")? {
        Some(m) if !m.trim().is_empty() => m,
        Some(_) => return Err(invalid("model: must not be empty")),
        None => models
            .first()
            .cloned()
            .ok_or_else(|| invalid("model: required (or a non-empty `models` list)"))?,
    };
    let mut messages = Vec::new();
    if let Some(system) = o.remove("system") {
        messages.extend(parse_system(system)?);
    }
    let raw: Vec<Value> =
        take_field(&mut o, "messages")?.ok_or_else(|| invalid("messages: required"))?;
    if raw.is_empty() {
        return Err(invalid("messages: must contain at least one message"));
    }
    for (i, m) in raw.into_iter().enumerate() {
        parse_message(m, i, &mut messages)?;
    }
    let mut tools = Vec::new();
    let mut raw_tools = Vec::new();
    for (i, t) in take_field::<Vec<Value>>(&mut o, "tools")?
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match parse_tool(t, i)? {
            Ok(tool) => tools.push(tool),
            Err(raw) => raw_tools.push(raw),
        }
    }
    let (tool_choice, parallel_tool_calls) = match take_field::<Value>(&mut o, "tool_choice")? {
        None => (None, None),
        Some(tc) => {
            let kind = tc.get("type").and_then(Value::as_str);
            let choice = match kind {
                Some("auto") => ToolChoice::Auto,
                Some("any") => ToolChoice::Required,
                Some("none") => ToolChoice::None,
                Some("tool") => ToolChoice::Function(
                    tc.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("tool_choice.name: required for type \"tool\""))?
                        .to_string(),
                ),
                other => {
                    return Err(invalid(format!(
                        "tool_choice.type: unknown value {other:?}"
                    )));
                }
            };
            let parallel = tc
                .get("disable_parallel_tool_use")
                .and_then(Value::as_bool)
                .map(|d| !d);
            (Some(choice), parallel)
        }
    };
    let thinking: Option<Value> = take_field(&mut o, "thinking")?;
    let mut reasoning: Option<ReasoningConfig> = match &thinking {
        None => None,
        Some(t) => match t.get("type").and_then(Value::as_str) {
            Some("enabled") => Some(ReasoningConfig {
                max_tokens: t
                    .get("budget_tokens")
                    .and_then(Value::as_u64)
                    .map(|b| b as u32),
                enabled: Some(true),
                ..Default::default()
            }),
            Some("adaptive") => Some(ReasoningConfig {
                enabled: Some(true),
                ..Default::default()
            }),
            Some("disabled") => Some(ReasoningConfig {
                enabled: Some(false),
                ..Default::default()
            }),
            other => return Err(invalid(format!("thinking.type: unknown value {other:?}"))),
        },
    };
    // OpenRouter's own reasoning object is accepted here too.
    if let Some(r) = take_field::<Value>(&mut o, "reasoning")? {
        let effort = r.get("effort").and_then(Value::as_str).map(|e| {
            Effort::parse(e)
                .ok_or_else(|| invalid(format!("reasoning.effort: unknown value {e:?}")))
        });
        reasoning = Some(ReasoningConfig {
            effort: effort.transpose()?,
            max_tokens: r
                .get("max_tokens")
                .and_then(Value::as_u64)
                .map(|b| b as u32),
            exclude: r.get("exclude").and_then(Value::as_bool).unwrap_or(false),
            enabled: r.get("enabled").and_then(Value::as_bool),
        });
    }
    let metadata: Option<Value> = take_field(&mut o, "metadata")?;
    let user = metadata
        .as_ref()
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let req = ChatRequest {
        model,
        models,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format: None,
        stop: take_field(&mut o, "stop_sequences")?.unwrap_or_default(),
        max_tokens: take_field(&mut o, "max_tokens")?,
        sampling: Sampling {
            temperature: take_field(&mut o, "temperature")?,
            top_p: take_field(&mut o, "top_p")?,
            top_k: take_field(&mut o, "top_k")?,
            ..Default::default()
        },
        reasoning,
        stream: take_field(&mut o, "stream")?.unwrap_or(false),
        user,
        session_id: take_field(&mut o, "session_id")?,
        provider: take_field(&mut o, "provider")?,
        route: take_field(&mut o, "route")?,
        raw_tools,
        extra: o
            .into_iter()
            .filter(|(k, v)| !GATEWAY_ONLY.contains(&k.as_str()) && !v.is_null())
            .collect(),
    };
    if req.sampling.temperature.is_some_and(|t| !t.is_finite()) {
        return Err(invalid("temperature: must be a finite number"));
    }
    req.check_tool_results()?;
    Ok(req)
}

fn cache_control(b: &Map<String, Value>) -> Option<CacheControl> {
    b.get("cache_control")
        .filter(|c| c.is_object())
        .map(|c| CacheControl {
            ttl: c.get("ttl").and_then(Value::as_str).map(str::to_string),
        })
}

fn parse_system(v: Value) -> Result<Vec<Message>, ProtocolError> {
    match v {
        Value::String(s) => Ok(vec![Message::text(Role::System, s)]),
        Value::Array(blocks) => {
            let mut m = Message::new(Role::System);
            m.content.reserve(blocks.len());
            for (i, b) in blocks.into_iter().enumerate() {
                let Value::Object(mut b) = b else {
                    return Err(invalid(format!("system[{i}]: expected a text block")));
                };
                let text = take_text(&mut b, "text", &Path::root("system", i))?;
                m.content.push(Part::Text {
                    text,
                    cache_control: cache_control(&b),
                });
            }
            Ok(vec![m])
        }
        Value::Null => Ok(vec![]),
        _ => Err(invalid(
            "system: expected a string or an array of text blocks",
        )),
    }
}

fn parse_image(b: Map<String, Value>, at: &dyn Display) -> Result<Part, ProtocolError> {
    let src = b
        .get("source")
        .ok_or_else(|| invalid(format!("{at}.source: required")))?;
    let source = match src.get("type").and_then(Value::as_str) {
        Some("base64") => ImageSource::Base64 {
            media_type: src
                .get("media_type")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{at}.source.media_type: required")))?
                .to_string(),
            data: src
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{at}.source.data: required")))?
                .to_string(),
        },
        Some("url") => ImageSource::Url(
            src.get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{at}.source.url: required")))?
                .to_string(),
        ),
        _ => {
            return Ok(Part::Raw(RawItem {
                protocol: Protocol::Anthropic,
                value: Value::Object(b),
            }));
        }
    };
    Ok(Part::Image {
        source,
        detail: None,
        cache_control: cache_control(&b),
    })
}

/// Text and image blocks (and anything else, kept raw).
fn parse_content_block(b: Value, at: &dyn Display) -> Result<Part, ProtocolError> {
    let Value::Object(mut b) = b else {
        return Err(invalid(format!("{at}: expected a content block object")));
    };
    match b.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Part::Text {
            text: take_text(&mut b, "text", at)?,
            cache_control: cache_control(&b),
        }),
        Some("image") => parse_image(b, at),
        Some(_) => Ok(Part::Raw(RawItem {
            protocol: Protocol::Anthropic,
            value: Value::Object(b),
        })),
        None => Err(invalid(format!("{at}.type: required"))),
    }
}

fn parse_message(v: Value, i: usize, out: &mut Vec<Message>) -> Result<(), ProtocolError> {
    let at = Path::root("messages", i);
    let Value::Object(mut o) = v else {
        return Err(invalid(format!("{at}: expected an object")));
    };
    let role = match o.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(other) => {
            return Err(invalid(format!(
                "{at}.role: unknown role {other:?} (expected user or assistant)"
            )));
        }
        None => return Err(invalid(format!("{at}.role: required"))),
    };
    let content = o
        .remove("content")
        .ok_or_else(|| invalid(format!("{at}.content: required")))?;
    let blocks = match content {
        Value::String(s) => {
            out.push(Message::text(role, s));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(invalid(format!(
                "{at}.content: expected a string or an array of blocks"
            )));
        }
    };
    let mut current = Message::new(role);
    for (j, b) in blocks.into_iter().enumerate() {
        let bat = Path::under(&at, "content", j);
        let kind = match b.get("type").and_then(Value::as_str) {
            Some("tool_result") => Some(Kind::ToolResult),
            Some("tool_use") => Some(Kind::ToolUse),
            Some("thinking") => Some(Kind::Thinking),
            Some("redacted_thinking") => Some(Kind::RedactedThinking),
            _ => None,
        };
        match (role, kind) {
            (Role::User, Some(Kind::ToolResult)) => {
                // Each tool result becomes a tool message, in order.
                if !current.content.is_empty() {
                    out.push(std::mem::replace(&mut current, Message::new(role)));
                }
                out.push(parse_tool_result(b, &bat)?);
            }
            (Role::Assistant, Some(Kind::ToolUse)) => {
                let extra = tool_use_extra(&b);
                let Value::Object(mut t) = b else {
                    unreachable!("has a type")
                };
                let id = take_text(&mut t, "id", &bat)?;
                let name = take_text(&mut t, "name", &bat)?;
                let input = t.remove("input").unwrap_or(Value::Object(Map::new()));
                current.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                    extra,
                });
            }
            (Role::Assistant, Some(Kind::Thinking)) => {
                let mut b = b;
                current.reasoning.push(ReasoningBlock::Text {
                    text: match b.get_mut("thinking") {
                        Some(Value::String(s)) => std::mem::take(s),
                        _ => String::new(),
                    },
                    signature: b
                        .get("signature")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    format: Some(REASONING_FORMAT.into()),
                });
            }
            (Role::Assistant, Some(Kind::RedactedThinking)) => {
                let data = b
                    .get("data")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("{bat}.data: required")))?;
                current.reasoning.push(redacted_to_reasoning(data));
            }
            _ => current.content.push(parse_content_block(b, &bat)?),
        }
    }
    if !current.content.is_empty()
        || !current.tool_calls.is_empty()
        || !current.reasoning.is_empty()
    {
        out.push(current);
    }
    Ok(())
}

/// The content blocks read for what they are rather than passed along as content.
#[derive(Clone, Copy)]
enum Kind {
    ToolResult,
    ToolUse,
    Thinking,
    RedactedThinking,
}

fn parse_tool_result(b: Value, at: &dyn Display) -> Result<Message, ProtocolError> {
    let Value::Object(mut b) = b else {
        unreachable!("has a type")
    };
    let mut m = Message::new(Role::Tool);
    m.tool_call_id = Some(
        b.get("tool_use_id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{at}.tool_use_id: required")))?
            .to_string(),
    );
    m.is_error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
    match b.remove("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            m.content.push(Part::text(s));
            m.content_is_text = true;
        }
        Some(Value::Array(parts)) => {
            m.content.reserve(parts.len());
            for (k, p) in parts.into_iter().enumerate() {
                m.content
                    .push(parse_content_block(p, &Path::under(at, "content", k))?);
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "{at}.content: expected a string or an array of blocks"
            )));
        }
    }
    if let (Some(cc), Some(Part::Text { cache_control, .. })) =
        (cache_control(&b), m.content.last_mut())
    {
        *cache_control = Some(cc);
    }
    Ok(m)
}

/// A custom tool, or (as `Err`) one of Anthropic's own tool types kept raw.
fn parse_tool(v: Value, i: usize) -> Result<Result<Tool, RawItem>, ProtocolError> {
    let at = format!("tools[{i}]");
    let Value::Object(mut o) = v else {
        return Err(invalid(format!("{at}: expected an object")));
    };
    match o.get("type").and_then(Value::as_str) {
        None | Some("custom") => {}
        Some(_) => {
            return Ok(Err(RawItem {
                protocol: Protocol::Anthropic,
                value: Value::Object(o),
            }));
        }
    }
    o.remove("type");
    let name: String = take_field(&mut o, "name")
        .map_err(|e| invalid(format!("{at}.{e}")))?
        .ok_or_else(|| invalid(format!("{at}.name: required")))?;
    let cc = cache_control(&o);
    o.remove("cache_control");
    Ok(Ok(Tool {
        name,
        description: take_field(&mut o, "description").map_err(|e| invalid(format!("{at}.{e}")))?,
        parameters: o.remove("input_schema"),
        strict: take_field(&mut o, "strict").map_err(|e| invalid(format!("{at}.{e}")))?,
        cache_control: cc,
        extra: o,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_system_tools_thinking_and_tool_results() {
        let r = parse_request(
            br#"{"model":"a/b","max_tokens":100,"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
            "thinking":{"type":"enabled","budget_tokens":2000},
            "tools":[{"name":"f","input_schema":{"type":"object"},"defer_loading":true},{"type":"web_search_20250305","name":"web_search"}],
            "tool_choice":{"type":"any","disable_parallel_tool_use":true},
            "messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"text","text":"calling"},{"type":"tool_use","id":"t1","name":"f","input":{"x":1}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"42"},{"type":"text","text":"thanks"}]}],
            "metadata":{"user_id":"u1"},"provider":{"order":["x"]}}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].role, Role::System);
        assert!(matches!(
            &r.messages[0].content[0],
            Part::Text {
                cache_control: Some(_),
                ..
            }
        ));
        assert_eq!(r.messages[2].tool_calls[0].arguments, r#"{"x":1}"#);
        assert_eq!(
            r.messages[2].reasoning[0],
            ReasoningBlock::Text {
                text: "hmm".into(),
                signature: Some("sig".into()),
                format: Some(REASONING_FORMAT.into())
            }
        );
        assert_eq!(r.messages[3].role, Role::Tool);
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("t1"));
        assert_eq!(r.messages[4].role, Role::User);
        assert_eq!(r.tools[0].extra["defer_loading"], true);
        assert_eq!(r.raw_tools[0].kind(), "web_search_20250305");
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert_eq!(r.reasoning.unwrap().max_tokens, Some(2000));
        assert_eq!(r.user.as_deref(), Some("u1"));
        assert!(r.provider.is_some());
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_request(
            br#"{"model":"a","max_tokens":"many","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("max_tokens:"), "{e}");
        let e = parse_request(br#"{"model":"a","messages":[{"role":"system","content":"x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("messages[0].role"), "{e}");
        // Paths down to the block, through a tool result's own content.
        for (body, path) in [
            (
                r#"{"model":"a","system":[{"type":"text","text":"s"},{"type":"text"}],"messages":[{"role":"user","content":"x"}]}"#,
                "system[1].text: required",
            ),
            (
                r#"{"model":"a","messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":5}]}]}"#,
                "messages[1].content[1].text: required",
            ),
            (
                r#"{"model":"a","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"a"},{"type":"text"}]}]}]}"#,
                "messages[0].content[0].content[1].text: required",
            ),
            (
                r#"{"model":"a","messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}]}"#,
                "messages[1].content[0].id: required",
            ),
        ] {
            let e = parse_request(body.as_bytes()).unwrap_err().to_string();
            assert_eq!(e, path);
        }
    }

    #[test]
    fn long_texts_arrive_whole() {
        // Texts are moved out of the parsed body: each reaches the request unchanged.
        let long = "x".repeat(40_000);
        let body = serde_json::json!({"model": "a", "system": [{"type": "text", "text": long}],
            "messages": [{"role": "user", "content": "read it"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "read", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": [{"type": "text", "text": long}]}, {"type": "text", "text": "go"}]}]});
        let r = parse_request(body.to_string().as_bytes()).unwrap();
        let texts: Vec<&str> = r
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, [long.as_str(), "read it", long.as_str(), "go"]);
    }
}
