//! Encode a canonical request for an OpenAI-compatible upstream.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use super::reasoning_details::{self, Detail};
use crate::ProtocolError;
use crate::canonical::*;

/// The flavours of "OpenAI-compatible": what each family of upstreams accepts beyond the
/// common core. Chosen per provider in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// OpenAI itself: `max_completion_tokens`, `reasoning_effort`, and nothing non-standard
    /// (it rejects unknown parameters such as `top_k`).
    OpenAi,
    /// OpenRouter and gateways like it: `reasoning: {...}`, `reasoning_details` echoed back,
    /// `cache_control` markers, every sampling parameter.
    OpenRouter,
    /// DeepSeek, Moonshot, Zhipu, MiniMax: `max_tokens`, reasoning returned as
    /// `reasoning_content`, which goes back on assistant turns that called tools.
    DeepSeek,
    /// vLLM, llama.cpp, Ollama, Together, Groq and the rest: `max_tokens`, the extended
    /// sampling parameters, `reasoning_effort`.
    #[default]
    Generic,
}

impl Dialect {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "openai" => Dialect::OpenAi,
            "openrouter" => Dialect::OpenRouter,
            "deepseek" => Dialect::DeepSeek,
            "generic" => Dialect::Generic,
            _ => return None,
        })
    }

    fn max_tokens_key(self) -> &'static str {
        match self {
            Dialect::OpenAi => "max_completion_tokens",
            _ => "max_tokens",
        }
    }
}

pub struct EncodeOptions<'a> {
    /// The provider's own name for the model.
    pub model: &'a str,
    pub stream: bool,
    pub dialect: Dialect,
    /// Ask for usage in streams (`stream_options.include_usage`); a few servers reject it.
    pub stream_usage: bool,
    /// Forward fields the canonical request does not model (only when the client spoke the
    /// same protocol).
    pub forward_extra: bool,
}

/// Refuse what an OpenAI-compatible upstream cannot be sent: items in another protocol's
/// own shape.
fn check_expressible(req: &ChatRequest) -> Result<(), ProtocolError> {
    for (i, m) in req.messages.iter().enumerate() {
        for p in &m.content {
            if let Part::Raw(raw) = p
                && raw.protocol != Protocol::OpenAi
            {
                return Err(ProtocolError::unsupported(format!(
                    "messages[{i}]: content of type {:?} ({} format) cannot be sent to an OpenAI-compatible provider",
                    raw.kind(),
                    raw.protocol.name()
                )));
            }
        }
    }
    if let Some(t) = req
        .raw_tools
        .iter()
        .find(|t| t.protocol != Protocol::OpenAi)
    {
        return Err(ProtocolError::unsupported(format!(
            "tools: the {} tool of type {:?} is not supported by OpenAI-compatible providers",
            t.protocol.name(),
            t.kind()
        )));
    }
    Ok(())
}

/// Encode the request body.
pub fn encode_request(
    req: &ChatRequest,
    opts: &EncodeOptions<'_>,
) -> Result<Vec<u8>, ProtocolError> {
    check_expressible(req)?;
    let body = Body { req, opts };
    crate::json::to_vec(&body).map_err(ProtocolError::unsupported)
}

struct Body<'a> {
    req: &'a ChatRequest,
    opts: &'a EncodeOptions<'a>,
}

impl Serialize for Body<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.req;
        let o = self.opts;
        let d = o.dialect;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("model", o.model)?;
        m.serialize_entry(
            "messages",
            &Messages {
                msgs: &r.messages,
                dialect: d,
            },
        )?;
        if o.stream {
            m.serialize_entry("stream", &true)?;
            if o.stream_usage {
                m.serialize_entry(
                    "stream_options",
                    &StreamOptions {
                        include_usage: true,
                    },
                )?;
            }
        }
        if let Some(n) = r.max_tokens {
            m.serialize_entry(d.max_tokens_key(), &n)?;
        }
        let sp = &r.sampling;
        opt(&mut m, "temperature", &sp.temperature)?;
        opt(&mut m, "top_p", &sp.top_p)?;
        opt(&mut m, "frequency_penalty", &sp.frequency_penalty)?;
        opt(&mut m, "presence_penalty", &sp.presence_penalty)?;
        opt(&mut m, "seed", &sp.seed)?;
        if d != Dialect::OpenAi {
            opt(&mut m, "top_k", &sp.top_k)?;
            opt(&mut m, "repetition_penalty", &sp.repetition_penalty)?;
            opt(&mut m, "min_p", &sp.min_p)?;
            opt(&mut m, "top_a", &sp.top_a)?;
        }
        if !r.stop.is_empty() {
            m.serialize_entry("stop", &r.stop)?;
        }
        if !r.tools.is_empty() {
            m.serialize_entry(
                "tools",
                &r.tools
                    .iter()
                    .map(|t| ToolOut {
                        tool: t,
                        cache_control: d == Dialect::OpenRouter,
                        extra: o.forward_extra,
                    })
                    .collect::<Vec<_>>(),
            )?;
        }
        if let Some(tc) = &r.tool_choice {
            m.serialize_entry("tool_choice", &tool_choice(tc))?;
        }
        opt(&mut m, "parallel_tool_calls", &r.parallel_tool_calls)?;
        if let Some(rf) = &r.response_format {
            m.serialize_entry("response_format", &response_format(rf))?;
        }
        if let Some(rc) = &r.reasoning {
            match d {
                Dialect::OpenRouter => {
                    let mut v = Map::new();
                    if let Some(e) = rc.effort {
                        v.insert("effort".into(), e.as_str().into());
                    }
                    if let Some(n) = rc.max_tokens {
                        v.insert("max_tokens".into(), n.into());
                    }
                    if rc.exclude {
                        v.insert("exclude".into(), true.into());
                    }
                    if let Some(en) = rc.enabled {
                        v.insert("enabled".into(), en.into());
                    }
                    m.serialize_entry("reasoning", &v)?;
                }
                Dialect::OpenAi | Dialect::Generic => {
                    // A budget without an effort (Anthropic-style thinking) asks for medium.
                    let effort = rc.effort.or(rc.is_on().then_some(Effort::Medium));
                    if let Some(e) = effort {
                        m.serialize_entry("reasoning_effort", e.as_str())?;
                    } else if rc.enabled == Some(false) {
                        m.serialize_entry("reasoning_effort", "none")?;
                    }
                }
                Dialect::DeepSeek => {}
            }
        }
        opt(&mut m, "user", &r.user)?;
        if o.forward_extra {
            for (k, v) in &r.extra {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

fn opt<M: SerializeMap, T: Serialize>(m: &mut M, k: &str, v: &Option<T>) -> Result<(), M::Error> {
    if let Some(v) = v {
        m.serialize_entry(k, v)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

struct Messages<'a> {
    msgs: &'a [Message],
    dialect: Dialect,
}

impl Serialize for Messages<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.msgs.len()))?;
        for msg in self.msgs {
            seq.serialize_element(&MessageOut {
                msg,
                dialect: self.dialect,
            })?;
        }
        seq.end()
    }
}

struct MessageOut<'a> {
    msg: &'a Message,
    dialect: Dialect,
}

impl Serialize for MessageOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let msg = self.msg;
        let d = self.dialect;
        let mut m = s.serialize_map(None)?;
        // OpenAI's older models know no `developer` role; everyone else treats it as system.
        let role = match (msg.role, d) {
            (Role::Developer, Dialect::OpenAi | Dialect::OpenRouter) => "developer",
            (Role::Developer, _) => "system",
            (r, _) => r.as_str(),
        };
        m.serialize_entry("role", role)?;
        if let Some(n) = &msg.name {
            m.serialize_entry("name", n)?;
        }
        let simple_text = msg.content.len() == 1
            && matches!(&msg.content[0], Part::Text { cache_control, .. }
                if cache_control.is_none() || d != Dialect::OpenRouter);
        if msg.content.is_empty() {
            if msg.role == Role::Assistant {
                m.serialize_entry("content", &Option::<()>::None)?;
            } else {
                m.serialize_entry("content", "")?;
            }
        } else if simple_text && (msg.content_is_text || msg.role != Role::User) {
            m.serialize_entry("content", &msg.joined_text())?;
        } else {
            let parts: Vec<PartOut<'_>> = msg
                .content
                .iter()
                .map(|p| PartOut {
                    part: p,
                    cache_control: d == Dialect::OpenRouter,
                })
                .collect();
            m.serialize_entry("content", &parts)?;
        }
        if !msg.tool_calls.is_empty() {
            let calls: Vec<Value> = msg
                .tool_calls
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    })
                })
                .collect();
            m.serialize_entry("tool_calls", &calls)?;
        }
        if let Some(id) = &msg.tool_call_id {
            m.serialize_entry("tool_call_id", id)?;
        }
        if msg.role == Role::Assistant && !msg.reasoning.is_empty() {
            match d {
                Dialect::OpenRouter => {
                    let details: Vec<Detail<'_>> = msg
                        .reasoning
                        .iter()
                        .enumerate()
                        .map(|(i, b)| reasoning_details::render(b, i))
                        .collect();
                    m.serialize_entry("reasoning_details", &details)?;
                }
                Dialect::DeepSeek if !msg.tool_calls.is_empty() => {
                    let text: String = msg
                        .reasoning
                        .iter()
                        .filter_map(|b| match b {
                            ReasoningBlock::Text { text, .. } => Some(text.as_str()),
                            _ => None,
                        })
                        .collect();
                    m.serialize_entry("reasoning_content", &text)?;
                }
                _ => {}
            }
        }
        m.end()
    }
}

struct PartOut<'a> {
    part: &'a Part,
    cache_control: bool,
}

impl Serialize for PartOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.part {
            Part::Raw(raw) => raw.value.serialize(s),
            Part::Text {
                text,
                cache_control,
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("type", "text")?;
                m.serialize_entry("text", text)?;
                if let (true, Some(cc)) = (self.cache_control, cache_control) {
                    m.serialize_entry("cache_control", &cache_control_json(cc))?;
                }
                m.end()
            }
            Part::Image {
                source,
                detail,
                cache_control,
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("type", "image_url")?;
                let mut iu = Map::new();
                iu.insert("url".into(), source.to_url().into());
                if let Some(d) = detail {
                    iu.insert("detail".into(), d.clone().into());
                }
                m.serialize_entry("image_url", &iu)?;
                if let (true, Some(cc)) = (self.cache_control, cache_control) {
                    m.serialize_entry("cache_control", &cache_control_json(cc))?;
                }
                m.end()
            }
        }
    }
}

fn cache_control_json(cc: &CacheControl) -> Value {
    let mut v = serde_json::json!({"type": "ephemeral"});
    if let Some(ttl) = &cc.ttl {
        v["ttl"] = ttl.clone().into();
    }
    v
}

struct ToolOut<'a> {
    tool: &'a Tool,
    cache_control: bool,
    /// Forward the tool's unmodelled fields (same protocol only).
    extra: bool,
}

impl Serialize for ToolOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.tool;
        let mut f = Map::new();
        f.insert("name".into(), t.name.clone().into());
        if let Some(d) = &t.description {
            f.insert("description".into(), d.clone().into());
        }
        if let Some(p) = &t.parameters {
            f.insert("parameters".into(), p.clone());
        }
        if let Some(st) = t.strict {
            f.insert("strict".into(), st.into());
        }
        if self.extra {
            for (k, v) in &t.extra {
                f.insert(k.clone(), v.clone());
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "function")?;
        m.serialize_entry("function", &f)?;
        if let (true, Some(cc)) = (self.cache_control, &t.cache_control) {
            m.serialize_entry("cache_control", &cache_control_json(cc))?;
        }
        m.end()
    }
}

fn tool_choice(tc: &ToolChoice) -> Value {
    match tc {
        ToolChoice::Auto => "auto".into(),
        ToolChoice::None => "none".into(),
        ToolChoice::Required => "required".into(),
        ToolChoice::Function(name) => {
            serde_json::json!({"type": "function", "function": {"name": name}})
        }
    }
}

fn response_format(rf: &ResponseFormat) -> Value {
    match rf {
        ResponseFormat::Text => serde_json::json!({"type": "text"}),
        ResponseFormat::JsonObject => serde_json::json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
            description,
        } => {
            let mut js = serde_json::json!({"name": name, "schema": schema});
            if let Some(s) = strict {
                js["strict"] = (*s).into();
            }
            if let Some(d) = description {
                js["description"] = d.clone().into();
            }
            serde_json::json!({"type": "json_schema", "json_schema": js})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::parse_request;

    fn encode(body: &str, dialect: Dialect, stream: bool) -> Value {
        let req = parse_request(body.as_bytes()).unwrap();
        let out = encode_request(
            &req,
            &EncodeOptions {
                model: "up-model",
                stream,
                dialect,
                stream_usage: true,
                forward_extra: true,
            },
        )
        .unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    /// The body is written by sonic-rs (`crate::json`); every byte must be what serde_json
    /// writes for the same request: escapes, non-ASCII text, numbers, extras.
    #[test]
    fn the_body_is_byte_for_byte_what_serde_json_writes() {
        let body = r#"{"model":"a/b","temperature":0.7,"top_p":1,"seed":-3,"max_tokens":64,
            "frequency_penalty":-0.25,"presence_penalty":1e-3,"stop":["\n\n","</s>"],
            "messages":[{"role":"system","content":"quote \" backslash \\ tab \t nul \u0000 bell \u0007 del \u007f"},
            {"role":"user","content":[{"type":"text","text":"é 😀 \u2028 \u2029 </script> long ... "},
                {"type":"image_url","image_url":{"url":"https://x.example/a.png","detail":"high"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"f","arguments":"{\"a\":[1,2.5,\"\\n\"]}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"{\"ok\":true}"}],
            "tools":[{"type":"function","function":{"name":"f","description":"d \"q\"",
                "parameters":{"type":"object","properties":{"a":{"type":"array","maxItems":1.5e3}}}}}],
            "response_format":{"type":"json_object"},"logit_bias":{"50256":-100},"user":"u\u00e9"}"#;
        let req = parse_request(body.as_bytes()).unwrap();
        for dialect in [
            Dialect::OpenAi,
            Dialect::OpenRouter,
            Dialect::DeepSeek,
            Dialect::Generic,
        ] {
            let opts = EncodeOptions {
                model: "up-model",
                stream: true,
                dialect,
                stream_usage: true,
                forward_extra: true,
            };
            let ours = encode_request(&req, &opts).unwrap();
            let serde = serde_json::to_vec(&Body {
                req: &req,
                opts: &opts,
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }

    #[test]
    fn round_trips_the_common_core() {
        let v = encode(
            r#"{"model":"a/b","messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},
              {"role":"tool","tool_call_id":"c","content":"ok"}],
              "max_tokens":7,"top_k":3,"stop":["z"],"logprobs":true,"provider":{"only":["x"]},
              "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required"}"#,
            Dialect::OpenAi,
            true,
        );
        assert_eq!(v["model"], "up-model");
        assert_eq!(v["messages"][0]["content"], "hi");
        assert!(v["messages"][1]["content"].is_null());
        assert_eq!(
            v["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"x\":1}"
        );
        assert_eq!(v["messages"][2]["tool_call_id"], "c");
        assert_eq!(v["max_completion_tokens"], 7);
        assert!(v.get("top_k").is_none());
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["logprobs"], true);
        assert!(v.get("provider").is_none());
        assert_eq!(v["tool_choice"], "required");
    }

    #[test]
    fn dialects_differ_where_providers_do() {
        let body = r#"{"model":"a/b","messages":[{"role":"user","content":"hi"}],"max_tokens":7,"top_k":3,"reasoning":{"effort":"low"}}"#;
        let g = encode(body, Dialect::Generic, false);
        assert_eq!(g["max_tokens"], 7);
        assert_eq!(g["top_k"], 3);
        assert_eq!(g["reasoning_effort"], "low");
        assert!(g.get("stream").is_none());
        let r = encode(body, Dialect::OpenRouter, false);
        assert_eq!(r["reasoning"]["effort"], "low");
        let d = encode(body, Dialect::DeepSeek, false);
        assert!(d.get("reasoning_effort").is_none());
    }
}
