//! Parse an OpenAI / OpenRouter chat-completions request into the canonical request.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::reasoning_details;
use crate::ProtocolError;
use crate::canonical::*;
use crate::error::{Path, parse_json};

/// Parse a request body. Errors name the offending field.
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, ProtocolError> {
    let wire: WireRequest = parse_json(body).map_err(ProtocolError::InvalidRequest)?;
    let req = wire.into_canonical()?;
    req.check_tool_results()?;
    Ok(req)
}

/// The request as sent; known fields are typed, the rest kept in `extra`.
#[derive(Default)]
struct WireRequest {
    model: Option<String>,
    models: Option<Vec<String>>,
    messages: Option<Vec<Value>>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<Value>,
    stop: Option<Value>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    repetition_penalty: Option<f64>,
    min_p: Option<f64>,
    top_a: Option<f64>,
    seed: Option<i64>,
    reasoning: Option<WireReasoning>,
    reasoning_effort: Option<String>,
    stream: Option<bool>,
    user: Option<String>,
    session_id: Option<String>,
    provider: Option<Value>,
    route: Option<String>,
    n: Option<u32>,
    extra: Map<String, Value>,
}

#[derive(Deserialize, Default)]
struct WireReasoning {
    effort: Option<String>,
    max_tokens: Option<u32>,
    exclude: Option<bool>,
    enabled: Option<bool>,
}

/// Fields OpenRouter defines that mean something to llmux itself and are never forwarded.
const GATEWAY_ONLY: &[&str] = &[
    "transforms",
    "usage",
    "plugins",
    "stream_options",
    "metadata",
    "prompt_cache_key",
    "preset",
    "debug",
];

impl<'de> Deserialize<'de> for WireRequest {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireRequest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chat completion request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireRequest, A::Error> {
                let mut r = WireRequest::default();
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    match key.as_ref() {
                        "model" => r.model = map.next_value()?,
                        "models" => r.models = map.next_value()?,
                        "messages" => r.messages = map.next_value()?,
                        "tools" => r.tools = map.next_value()?,
                        "tool_choice" => r.tool_choice = map.next_value()?,
                        "parallel_tool_calls" => r.parallel_tool_calls = map.next_value()?,
                        "response_format" => r.response_format = map.next_value()?,
                        "stop" => r.stop = map.next_value()?,
                        "max_tokens" => r.max_tokens = map.next_value()?,
                        "max_completion_tokens" => r.max_completion_tokens = map.next_value()?,
                        "temperature" => r.temperature = map.next_value()?,
                        "top_p" => r.top_p = map.next_value()?,
                        "top_k" => r.top_k = map.next_value()?,
                        "frequency_penalty" => r.frequency_penalty = map.next_value()?,
                        "presence_penalty" => r.presence_penalty = map.next_value()?,
                        "repetition_penalty" => r.repetition_penalty = map.next_value()?,
                        "min_p" => r.min_p = map.next_value()?,
                        "top_a" => r.top_a = map.next_value()?,
                        "seed" => r.seed = map.next_value()?,
                        "reasoning" => r.reasoning = map.next_value()?,
                        "reasoning_effort" => r.reasoning_effort = map.next_value()?,
                        "stream" => r.stream = map.next_value()?,
                        "user" => r.user = map.next_value()?,
                        "session_id" => r.session_id = map.next_value()?,
                        "provider" => r.provider = map.next_value()?,
                        "route" => r.route = map.next_value()?,
                        "n" => r.n = map.next_value()?,
                        _ => {
                            let v: Value = map.next_value()?;
                            if !GATEWAY_ONLY.contains(&key.as_ref()) && !v.is_null() {
                                r.extra.insert(key.into_owned(), v);
                            }
                        }
                    }
                }
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

/// A field's name, borrowed from the body when it holds no escapes: the known fields'
/// names are only compared, so none of them costs an allocation.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn invalid(msg: impl Into<String>) -> ProtocolError {
    ProtocolError::InvalidRequest(msg.into())
}

impl WireRequest {
    fn into_canonical(self) -> Result<ChatRequest, ProtocolError> {
        let models = self.models.unwrap_or_default();
        let model = match self.model {
            Some(m) if !m.trim().is_empty() => m,
            Some(_) => return Err(invalid("model: must not be empty")),
            None => match models.first() {
                Some(m) => m.clone(),
                None => return Err(invalid("model: required (or a non-empty `models` list)")),
            },
        };
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ProtocolError::unsupported(
                "n: only one choice per request (n = 1) is supported",
            ));
        }
        let raw_messages = self.messages.ok_or_else(|| invalid("messages: required"))?;
        if raw_messages.is_empty() {
            return Err(invalid("messages: must contain at least one message"));
        }
        let mut messages = Vec::with_capacity(raw_messages.len());
        for (i, m) in raw_messages.into_iter().enumerate() {
            messages.push(parse_message(m, i)?);
        }

        let mut tools = Vec::new();
        for (i, t) in self.tools.unwrap_or_default().into_iter().enumerate() {
            tools.push(parse_tool(t, i)?);
        }
        let tool_choice = self.tool_choice.map(parse_tool_choice).transpose()?;
        let response_format = self
            .response_format
            .map(parse_response_format)
            .transpose()?;
        let stop = match self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(invalid(format!("stop[{i}]: expected a string"))),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid("stop: expected a string or an array of strings")),
        };

        let mut reasoning = self
            .reasoning
            .map(|r| -> Result<ReasoningConfig, ProtocolError> {
                Ok(ReasoningConfig {
                    effort: r.effort.as_deref().map(parse_effort).transpose()?,
                    max_tokens: r.max_tokens,
                    exclude: r.exclude.unwrap_or(false),
                    enabled: r.enabled,
                })
            });
        let reasoning = match (reasoning.take().transpose()?, self.reasoning_effort) {
            (Some(r), _) => Some(r),
            (None, Some(e)) => Some(ReasoningConfig {
                effort: Some(parse_effort(&e)?),
                ..Default::default()
            }),
            (None, None) => None,
        };

        for (name, v) in [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
            ("repetition_penalty", self.repetition_penalty),
            ("min_p", self.min_p),
            ("top_a", self.top_a),
        ] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(invalid(format!("{name}: must be a finite number")));
            }
        }

        Ok(ChatRequest {
            model,
            models,
            messages,
            tools,
            tool_choice,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format,
            stop,
            max_tokens: self.max_completion_tokens.or(self.max_tokens),
            sampling: Sampling {
                temperature: self.temperature,
                top_p: self.top_p,
                top_k: self.top_k,
                frequency_penalty: self.frequency_penalty,
                presence_penalty: self.presence_penalty,
                repetition_penalty: self.repetition_penalty,
                min_p: self.min_p,
                top_a: self.top_a,
                seed: self.seed,
            },
            reasoning,
            stream: self.stream.unwrap_or(false),
            user: self.user,
            session_id: self.session_id,
            provider: self.provider,
            route: self.route,
            raw_tools: Vec::new(),
            extra: self.extra,
        })
    }
}

fn parse_effort(s: &str) -> Result<Effort, ProtocolError> {
    Effort::parse(s).ok_or_else(|| {
        invalid(format!(
            "reasoning.effort: unknown value {s:?} (expected xhigh, high, medium, low, minimal or none)"
        ))
    })
}

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    at: &(impl fmt::Display + ?Sized),
) -> Result<Option<&'a str>, ProtocolError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{at}.{key}: expected a string"))),
    }
}

/// Take a string field out of an object (moved, not copied).
fn take_str(
    obj: &mut Map<String, Value>,
    key: &str,
    at: &dyn fmt::Display,
) -> Result<Option<String>, ProtocolError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{at}.{key}: expected a string"))),
    }
}

fn parse_message(v: Value, i: usize) -> Result<Message, ProtocolError> {
    let at = Path::root("messages", i);
    let Value::Object(mut obj) = v else {
        return Err(invalid(format!("{at}: expected an object")));
    };
    let role = match str_field(&obj, "role", &at)? {
        Some("system") => Role::System,
        Some("developer") => Role::Developer,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => {
            return Err(invalid(format!(
                "{at}.role: unknown role {other:?} (expected system, developer, user, assistant or tool)"
            )));
        }
        None => return Err(invalid(format!("{at}.role: required"))),
    };
    let mut msg = Message::new(role);
    msg.name = take_str(&mut obj, "name", &at)?;
    match obj.remove("content") {
        None | Some(Value::Null) => {
            if role != Role::Assistant {
                return Err(invalid(format!(
                    "{at}.content: required for a {} message",
                    role.as_str()
                )));
            }
        }
        Some(Value::String(s)) => {
            msg.content.push(Part::text(s));
            msg.content_is_text = true;
        }
        Some(Value::Array(parts)) => {
            msg.content.reserve(parts.len());
            for (j, p) in parts.into_iter().enumerate() {
                msg.content
                    .push(parse_part(p, &Path::under(&at, "content", j))?);
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "{at}.content: expected a string or an array of parts"
            )));
        }
    }
    if let Some(calls) = obj.get("tool_calls") {
        match calls {
            Value::Null => {}
            Value::Array(calls) if role == Role::Assistant => {
                for (j, c) in calls.iter().enumerate() {
                    msg.tool_calls
                        .push(parse_tool_call(c, &format!("{at}.tool_calls[{j}]"))?);
                }
            }
            Value::Array(_) => {
                return Err(invalid(format!(
                    "{at}.tool_calls: only assistant messages carry tool calls"
                )));
            }
            _ => return Err(invalid(format!("{at}.tool_calls: expected an array"))),
        }
    }
    if role == Role::Tool {
        msg.tool_call_id = Some(
            str_field(&obj, "tool_call_id", &at)?
                .ok_or_else(|| invalid(format!("{at}.tool_call_id: required for a tool message")))?
                .to_string(),
        );
    }
    if role == Role::Assistant {
        if let Some(details) = obj.get("reasoning_details").filter(|v| !v.is_null()) {
            msg.reasoning = reasoning_details::parse(details, &format!("{at}.reasoning_details"))?;
        } else if let Some(text) =
            str_field(&obj, "reasoning", &at)?.or(str_field(&obj, "reasoning_content", &at)?)
        {
            msg.reasoning.push(ReasoningBlock::Text {
                text: text.to_string(),
                signature: None,
                format: None,
            });
        }
    }
    Ok(msg)
}

fn parse_cache_control(
    obj: &Map<String, Value>,
    at: &dyn fmt::Display,
) -> Result<Option<CacheControl>, ProtocolError> {
    match obj.get("cache_control") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(cc)) => Ok(Some(CacheControl {
            ttl: str_field(cc, "ttl", &format!("{at}.cache_control"))?.map(str::to_string),
        })),
        Some(_) => Err(invalid(format!("{at}.cache_control: expected an object"))),
    }
}

fn parse_part(v: Value, at: &dyn fmt::Display) -> Result<Part, ProtocolError> {
    let Value::Object(mut obj) = v else {
        return Err(invalid(format!("{at}: expected an object")));
    };
    let obj = &mut obj;
    match str_field(obj, "type", at)? {
        Some("text") => {
            let text = take_str(obj, "text", at)?
                .ok_or_else(|| invalid(format!("{at}.text: required")))?;
            Ok(Part::Text {
                text,
                cache_control: parse_cache_control(obj, at)?,
            })
        }
        Some("image_url") => {
            let (url, detail) = match obj.get("image_url") {
                Some(Value::String(u)) => (u.as_str(), None),
                Some(Value::Object(o)) => (
                    str_field(o, "url", &format!("{at}.image_url"))?
                        .ok_or_else(|| invalid(format!("{at}.image_url.url: required")))?,
                    str_field(o, "detail", &format!("{at}.image_url"))?.map(str::to_string),
                ),
                _ => return Err(invalid(format!("{at}.image_url: required"))),
            };
            Ok(Part::Image {
                source: ImageSource::from_url(url),
                detail,
                cache_control: parse_cache_control(obj, at)?,
            })
        }
        Some(_) => Ok(Part::Raw(RawItem {
            protocol: Protocol::OpenAi,
            value: Value::Object(std::mem::take(obj)),
        })),
        None => Err(invalid(format!("{at}.type: required"))),
    }
}

fn parse_tool_call(v: &Value, at: &str) -> Result<ToolCall, ProtocolError> {
    let Value::Object(obj) = v else {
        return Err(invalid(format!("{at}: expected an object")));
    };
    let id = str_field(obj, "id", at)?.ok_or_else(|| invalid(format!("{at}.id: required")))?;
    let Some(Value::Object(f)) = obj.get("function") else {
        return Err(invalid(format!("{at}.function: required")));
    };
    let fat = format!("{at}.function");
    let name =
        str_field(f, "name", &fat)?.ok_or_else(|| invalid(format!("{fat}.name: required")))?;
    let arguments = match f.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        // Some clients send the arguments as an object; keep them as JSON text.
        Some(other @ Value::Object(_)) => other.to_string(),
        Some(_) => return Err(invalid(format!("{fat}.arguments: expected a JSON string"))),
    };
    Ok(ToolCall {
        id: id.to_string(),
        name: name.to_string(),
        arguments,
        extra: None,
    })
}

fn parse_tool(v: Value, i: usize) -> Result<Tool, ProtocolError> {
    let at = format!("tools[{i}]");
    let Value::Object(mut obj) = v else {
        return Err(invalid(format!("{at}: expected an object")));
    };
    match str_field(&obj, "type", &at)? {
        Some("function") | None => {}
        Some(other) => {
            return Err(ProtocolError::unsupported(format!(
                "{at}.type: tool type {other:?} is not supported (only \"function\")"
            )));
        }
    }
    // Taken out of the request, not copied: agents send dozens of tools with large schemas.
    let Some(Value::Object(mut f)) = obj.remove("function") else {
        return Err(invalid(format!("{at}.function: required")));
    };
    let fat = format!("{at}.function");
    let name =
        take_str(&mut f, "name", &fat)?.ok_or_else(|| invalid(format!("{fat}.name: required")))?;
    let parameters = match f.remove("parameters") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p),
        Some(_) => {
            return Err(invalid(format!(
                "{fat}.parameters: expected a JSON schema object"
            )));
        }
    };
    let strict = match f.get("strict") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(invalid(format!("{fat}.strict: expected a boolean"))),
    };
    Ok(Tool {
        name,
        description: take_str(&mut f, "description", &fat)?,
        parameters,
        strict,
        cache_control: parse_cache_control(&obj, &at)?,
        extra: Map::new(),
    })
}

fn parse_tool_choice(v: Value) -> Result<ToolChoice, ProtocolError> {
    match &v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" | "any" => Ok(ToolChoice::Required),
            other => Err(invalid(format!(
                "tool_choice: unknown value {other:?} (expected auto, none, required or an object)"
            ))),
        },
        Value::Object(o) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("tool_choice.function.name: required"))?;
            Ok(ToolChoice::Function(name.to_string()))
        }
        _ => Err(invalid("tool_choice: expected a string or an object")),
    }
}

fn parse_response_format(v: Value) -> Result<ResponseFormat, ProtocolError> {
    let Value::Object(o) = &v else {
        return Err(invalid("response_format: expected an object"));
    };
    match str_field(o, "type", "response_format")? {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let Some(Value::Object(js)) = o.get("json_schema") else {
                return Err(invalid("response_format.json_schema: required"));
            };
            let at = "response_format.json_schema";
            Ok(ResponseFormat::JsonSchema {
                name: str_field(js, "name", at)?.unwrap_or("response").to_string(),
                schema: js
                    .get("schema")
                    .cloned()
                    .unwrap_or(Value::Object(Map::new())),
                strict: js.get("strict").and_then(Value::as_bool),
                description: str_field(js, "description", at)?.map(str::to_string),
            })
        }
        Some(other) => Err(invalid(format!(
            "response_format.type: unknown value {other:?} (expected text, json_object or json_schema)"
        ))),
        None => Err(invalid("response_format.type: required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_request(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_full_request() {
        let r = parse_request(
            br#"{"model":"a/b","messages":[{"role":"system","content":"s"},
            {"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}},
              {"type":"image_url","image_url":{"url":"data:image/png;base64,AAA","detail":"low"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}],
            "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}],
            "tool_choice":"auto","stop":"x","max_tokens":5,"temperature":0.5,"stream":true,
            "reasoning":{"effort":"high"},"provider":{"order":["p"]},"logit_bias":{"1":2},"usage":{"include":true}}"#,
        )
        .unwrap();
        assert_eq!(r.model, "a/b");
        assert_eq!(r.messages.len(), 4);
        assert!(r.messages[0].content_is_text);
        assert!(matches!(
            r.messages[1].content[1],
            Part::Image {
                source: ImageSource::Base64 { .. },
                ..
            }
        ));
        assert!(
            matches!(&r.messages[1].content[0], Part::Text { text, cache_control: Some(_) } if text == "hi")
        );
        assert_eq!(r.messages[2].tool_calls[0].name, "f");
        assert_eq!(
            (r.tools[0].name.as_str(), r.tools[0].description.as_deref()),
            ("f", Some("d"))
        );
        assert_eq!(
            r.tools[0].parameters,
            Some(serde_json::json!({"type": "object"}))
        );
        assert_eq!(r.messages[3].tool_call_id.as_deref(), Some("c1"));
        assert_eq!(r.stop, vec!["x"]);
        assert_eq!(r.max_tokens, Some(5));
        assert!(r.stream);
        assert_eq!(r.reasoning.unwrap().effort, Some(Effort::High));
        assert!(r.extra.contains_key("logit_bias"));
        assert!(!r.extra.contains_key("usage"));
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err("{").contains("EOF"));
        assert!(err(r#"{"messages":[{"role":"user","content":"x"}]}"#).contains("model"));
        assert!(err(r#"{"model":"a","messages":[]}"#).contains("messages"));
        assert!(
            err(r#"{"model":"a","messages":[{"role":"bot","content":"x"}]}"#)
                .contains("messages[0].role")
        );
        assert!(
            err(r#"{"model":"a","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#)
                .contains("temperature")
        );
        assert!(
            err(r#"{"model":"a","messages":[{"role":"tool","content":"x"}]}"#)
                .contains("tool_call_id")
        );
        assert!(err(r#"{"model":5,"messages":[]}"#).contains("model"));
        assert!(err(r#"[1,2]"#).contains("request object"));
        assert!(
            err(r#"{"model":"a","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"text","text":7}]}]}"#)
                .contains("messages[0].content[1].text")
        );
        assert!(
            err(r#"{"model":"a","messages":[{"role":"user","content":"x"}],"tools":[{"function":{"name":"f","description":1}}]}"#)
                .contains("tools[0].function.description")
        );
    }

    #[test]
    fn field_names_with_escapes_are_the_same_fields() {
        // Names are borrowed from the body when they can be; one written with an escape is
        // decoded, and means the same field.
        let r = parse_request(
            br#"{"mod\u0065l":"a/b","messages":[{"role":"user","content":"x"}],"logit\u005fbias":{"1":2}}"#,
        )
        .unwrap();
        assert_eq!(r.model, "a/b");
        assert!(r.extra.contains_key("logit_bias"));
    }
}
