//! What the simulator will say: a protocol-independent plan of reasoning, text and tool calls,
//! with exact token accounting. A "token" here is one emitted piece (a word of text or
//! reasoning, a slice of tool arguments); usage counts exactly those pieces.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::Value;

use crate::directives::Directives;

/// A request, reduced to what the simulator's answer depends on.
#[derive(Debug, Clone, Default)]
pub struct SimRequest {
    pub model: String,
    pub messages: Vec<SimMessage>,
    pub tools: Vec<SimTool>,
    pub tool_choice: SimToolChoice,
    pub max_tokens: Option<usize>,
    pub stream: bool,
    /// The request asks for reasoning / thinking.
    pub reasoning: bool,
    /// The last message carries tool results.
    pub last_is_tool_result: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SimMessage {
    pub role: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct SimTool {
    pub name: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SimToolChoice {
    #[default]
    Auto,
    None,
    Required,
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimToolCall {
    pub id: String,
    pub name: String,
    /// The arguments JSON, split into the pieces a stream sends.
    pub pieces: Vec<String>,
}

impl SimToolCall {
    pub fn arguments(&self) -> String {
        self.pieces.concat()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
}

#[derive(Debug, Clone)]
pub struct Script {
    pub id: String,
    pub reasoning: Vec<String>,
    pub text: Vec<String>,
    pub tool_calls: Vec<SimToolCall>,
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
}

impl Script {
    pub fn completion_tokens(&self) -> usize {
        self.reasoning.len()
            + self.text.len()
            + self
                .tool_calls
                .iter()
                .map(|c| c.pieces.len() + 1)
                .sum::<usize>()
    }
    pub fn reasoning_tokens(&self) -> usize {
        self.reasoning.len()
    }
    pub fn text(&self) -> String {
        self.text.concat()
    }
    pub fn reasoning_text(&self) -> String {
        self.reasoning.concat()
    }

    /// The signature the simulator issues for its reasoning (providers that sign thinking
    /// check it when it comes back).
    pub fn signature(&self) -> String {
        signature_for(&self.reasoning_text())
    }
}

/// The simulator's signature for a reasoning text.
pub fn signature_for(reasoning: &str) -> String {
    format!("simsig-{:016x}", hash_of(reasoning))
}

const FILLER: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
];

const THOUGHT: &str = "Let me think about this step by step before I answer.";

/// Count tokens the simulator's way: whitespace-separated words, plus a small per-message
/// overhead, as real chat templates add.
pub fn count_prompt_tokens(req: &SimRequest) -> usize {
    let mut n = 3;
    for m in &req.messages {
        n += 3 + m.text.split_whitespace().count();
    }
    for t in &req.tools {
        n += 1
            + t.name.split_whitespace().count()
            + t.parameters.to_string().split_whitespace().count();
    }
    n
}

fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, w) in text.split_whitespace().enumerate() {
        out.push(if i == 0 {
            w.to_string()
        } else {
            format!(" {w}")
        });
    }
    out
}

fn hash_of(x: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// Example arguments for a JSON schema: every property filled with a typed placeholder.
pub fn example_arguments(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        _ if schema
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty()) =>
        {
            schema["enum"][0].clone()
        }
        Some("object") | None if schema.get("properties").is_some() => {
            let mut obj = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    obj.insert(k.clone(), example_arguments(v));
                }
            }
            Value::Object(obj)
        }
        Some("object") | None => Value::Object(Default::default()),
        Some("string") => Value::String("sim".into()),
        Some("integer") => Value::from(1),
        Some("number") => Value::from(1.5),
        Some("boolean") => Value::Bool(true),
        Some("array") => Value::Array(vec![]),
        Some(_) => Value::Null,
    }
}

/// Plan the answer to `req` under directives `d`. `cached_prefix` says how many prompt tokens
/// the simulated prompt cache already held.
pub fn plan(req: &SimRequest, d: &Directives, seq: u64, cached_tokens: usize) -> Script {
    let prompt_tokens = count_prompt_tokens(req);
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.text.as_str())
        .unwrap_or("");
    let reasoning = if req.reasoning || d.reasoning {
        words(THOUGHT)
    } else {
        Vec::new()
    };
    let call_tools = !req.tools.is_empty()
        && match &req.tool_choice {
            SimToolChoice::None => false,
            SimToolChoice::Required | SimToolChoice::Named(_) => !req.last_is_tool_result,
            SimToolChoice::Auto => !req.last_is_tool_result,
        };
    let id = format!("sim-{seq:08x}{:08x}", hash_of(&req.model) as u32);
    if call_tools {
        let chosen: Vec<&SimTool> = match &req.tool_choice {
            SimToolChoice::Named(n) => req.tools.iter().filter(|t| &t.name == n).take(1).collect(),
            _ if last_user.contains("parallel") => req.tools.iter().collect(),
            _ => req.tools.iter().take(1).collect(),
        };
        if !chosen.is_empty() {
            let tool_calls = chosen
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    let args = example_arguments(&t.parameters).to_string();
                    let pieces = args
                        .as_bytes()
                        .chunks(8)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect();
                    SimToolCall {
                        id: format!("call_{seq:x}_{i}"),
                        name: t.name.clone(),
                        pieces,
                    }
                })
                .collect();
            return Script {
                id,
                reasoning,
                text: Vec::new(),
                tool_calls,
                finish: Finish::ToolCalls,
                prompt_tokens,
                cached_tokens,
            };
        }
    }
    let mut text = if let Some(rest) = last_user.trim_start().strip_prefix("echo:") {
        words(rest)
    } else if req.last_is_tool_result {
        let last = req.messages.last().map(|m| m.text.as_str()).unwrap_or("");
        words(&format!("The tool returned: {last}"))
    } else {
        let h = hash_of(last_user) as usize;
        let mut s = vec!["Simulated".to_string(), " answer:".to_string()];
        for i in 0..d.tokens.saturating_sub(2) {
            s.push(format!(" {}", FILLER[(h + i) % FILLER.len()]));
        }
        s.truncate(d.tokens);
        s
    };
    let mut finish = Finish::Stop;
    if let Some(max) = req.max_tokens {
        let room = max.saturating_sub(reasoning.len());
        if text.len() > room {
            text.truncate(room);
            finish = Finish::Length;
        }
    }
    Script {
        id,
        reasoning,
        text,
        tool_calls: Vec::new(),
        finish,
        prompt_tokens,
        cached_tokens,
    }
}

/// A key for the simulated prompt cache: everything but the last message.
pub fn prefix_key(req: &SimRequest) -> Option<(u64, usize)> {
    if req.messages.len() < 2 {
        return None;
    }
    let prefix = &req.messages[..req.messages.len() - 1];
    let mut h = DefaultHasher::new();
    req.model.hash(&mut h);
    let mut tokens = 3;
    for m in prefix {
        m.role.hash(&mut h);
        m.text.hash(&mut h);
        tokens += 3 + m.text.split_whitespace().count();
    }
    Some((h.finish(), tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> SimRequest {
        SimRequest {
            model: "m".into(),
            messages: vec![SimMessage {
                role: "user".into(),
                text: text.into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn deterministic_and_counted() {
        let d = Directives::default();
        let a = plan(&req("hello there"), &d, 1, 0);
        let b = plan(&req("hello there"), &d, 1, 0);
        assert_eq!(a.text, b.text);
        assert_eq!(a.text.len(), d.tokens);
        assert_eq!(a.completion_tokens(), d.tokens);
        assert_eq!(a.prompt_tokens, 3 + 3 + 2);
    }

    #[test]
    fn echo_and_length_cut() {
        let mut r = req("echo: one two three four");
        let s = plan(&r, &Directives::default(), 1, 0);
        assert_eq!(s.text(), "one two three four");
        r.max_tokens = Some(2);
        let s = plan(&r, &Directives::default(), 1, 0);
        assert_eq!(s.text(), "one two");
        assert_eq!(s.finish, Finish::Length);
    }

    #[test]
    fn tools_get_schema_shaped_arguments() {
        let mut r = req("weather?");
        r.tools.push(SimTool {
            name: "get_weather".into(),
            parameters: serde_json::json!({"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}),
        });
        let s = plan(&r, &Directives::default(), 7, 0);
        assert_eq!(s.finish, Finish::ToolCalls);
        let args: Value = serde_json::from_str(&s.tool_calls[0].arguments()).unwrap();
        assert_eq!(args, serde_json::json!({"city":"sim","days":1}));
    }
}
