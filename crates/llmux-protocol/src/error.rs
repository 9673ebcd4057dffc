//! Errors raised while parsing or translating a wire format.

/// A request or response that cannot be understood or cannot be expressed in the target format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The client's request is malformed (bad JSON, wrong types, missing fields).
    #[error("{0}")]
    InvalidRequest(String),
    /// The request asks for something the target protocol cannot express.
    #[error("{0}")]
    Unsupported(String),
    /// The upstream answered with something that is not valid in its own protocol.
    #[error("invalid upstream response: {0}")]
    InvalidUpstream(String),
}

impl ProtocolError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidRequest(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::Unsupported(msg.into())
    }
    pub fn upstream(msg: impl Into<String>) -> Self {
        Self::InvalidUpstream(msg.into())
    }
}

/// Parse JSON into `T`, reporting the path of the offending field (`messages[0].role: ...`).
pub fn parse_json<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, String> {
    // The plain parse is sonic-rs's (it scans many bytes at a time): through serde, as here,
    // it agrees with serde_json on every edge case the tests below try and stops at 128 levels
    // of nesting, as serde_json does (its own `sonic_rs::Value` parser does not, and must not
    // be used on untrusted bodies). Tracking the path costs an allocation per key, so it is
    // paid only to explain an error: the document is parsed once more, by serde_json with
    // tracking, when the plain parse fails.
    if let Ok(v) = sonic_rs::from_slice(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    // What follows the document (`{...} x`) is an error too.
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// The stack a thread needs to parse untrusted JSON with [`parse_json`]: 128 levels of nesting
/// take far less in a release build, but more than the usual 2 MiB in an unoptimized one
/// (sonic-rs's frames at `opt-level = 0`). Threads that serve requests are given this much.
pub const PARSING_STACK_BYTES: usize = 8 << 20;

/// Take `key` out of a JSON object as a `T` (absent or null: `None`), naming the field in the
/// error.
pub fn take_field<T: serde::de::DeserializeOwned>(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<T>, ProtocolError> {
    match obj.remove(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| ProtocolError::InvalidRequest(format!("{key}: {e}"))),
    }
}

/// Where in a request a field is (`messages[0].content[2]`), written only when an error
/// names it: formatting every element's path up front cost an allocation each.
#[derive(Clone, Copy)]
pub struct Path<'a> {
    parent: Option<&'a dyn std::fmt::Display>,
    field: &'static str,
    index: usize,
}

impl<'a> Path<'a> {
    /// `field[index]` at the top of the request.
    pub fn root(field: &'static str, index: usize) -> Self {
        Path {
            parent: None,
            field,
            index,
        }
    }

    /// `parent.field[index]`.
    pub fn under(parent: &'a dyn std::fmt::Display, field: &'static str, index: usize) -> Self {
        Path {
            parent: Some(parent),
            field,
            index,
        }
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if let Some(p) = self.parent {
            write!(f, "{p}.")?;
        }
        write!(f, "{}[{}]", self.field, self.index)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;

    use super::parse_json;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Doc {
        model: String,
        n: Option<u32>,
        t: Option<f64>,
        messages: Vec<Value>,
    }

    /// A request body nested 100,000 deep is an error, not a stack overflow that aborts the
    /// process, on a serving thread's stack.
    #[test]
    fn deep_nesting_is_refused() {
        let depth = 100_000;
        let body = format!(
            r#"{{"model":"m","messages":[{}{}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let refused = std::thread::Builder::new()
            .stack_size(super::PARSING_STACK_BYTES)
            .spawn(move || {
                parse_json::<Doc>(body.as_bytes()).is_err()
                    && parse_json::<Value>(body.as_bytes()).is_err()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(refused);
    }

    /// What serde_json refuses is refused, and what it accepts is read to the same values.
    #[test]
    fn accepts_and_reads_what_serde_json_does() {
        let documents: &[&[u8]] = &[
            br#"{"model":"m","messages":[{"a":"\ud800"}]}"#,
            br#"{"model":"m","messages":[{"a":"\udc00x"}]}"#,
            b"{\"model\":\"m\",\"messages\":[{\"a\":\"x\ny\"}]}",
            b"{\"model\":\"m\",\"messages\":[{\"a\":\"x\x01y\"}]}",
            br#"{"model":"m","messages":[]} x"#,
            br#"{"model":"m","messages":[]}   "#,
            b"{\"model\":\"m\xff\",\"messages\":[]}",
            b"\xef\xbb\xbf{\"model\":\"m\",\"messages\":[]}",
            b"{\"model\":\"m\",\"messages\":[]}\0",
            br#"{"model":"m","messages":[NaN]}"#,
            br#"{"model":"m","messages":[01]}"#,
            br#"{"model":"m","messages":[1.]}"#,
            br#"{"model":"m","messages":[1e400]}"#,
            br#"{"model":"m","t":1e400,"messages":[]}"#,
            br#"{"model":"m","n":1.0,"messages":[]}"#,
            br#"{"model":"m","n":-1,"messages":[]}"#,
            br#"{"model":"m","n":4294967296,"messages":[]}"#,
            br#"{"model":"m","messages":[],"model":"x"}"#,
            br#"{"model":"m","messages":[/*c*/]}"#,
            br#"{"model":"m","messages":[],}"#,
            br#"{"model":"m","messages":[1,]}"#,
            br#"{"model":7,"messages":[]}"#,
            br#"{"messages":[]}"#,
            b"",
            br#"{"model":"m","messages":[{"a":1,"a":2}]}"#,
            br#"{"model":"m","messages":[18446744073709551616, -9223372036854775809]}"#,
            br#"{"model":"m","t":0.1,"messages":[-0, 0.1, 1.7976931348623157e308, 5e-324, 1E+2, 123456789012345678901234567890]}"#,
            br#"{"model":"m\u00e9","messages":["\u00e9\uD83D\uDE00 \/ \b\f\n\r\t\"\\"]}"#,
            "{\"model\":\"m\",\"messages\":[\"é 日本 😀\", {\"k\": null, \"t\": true}]}".as_bytes(),
        ];
        for doc in documents {
            let ours = parse_json::<Doc>(doc).ok();
            let theirs = serde_json::from_slice::<Doc>(doc).ok();
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(doc));
        }
    }
}
