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
    // Tracking the path costs an allocation per key, so it is paid only to explain an error:
    // the document is parsed once more, with tracking, when the plain parse fails.
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

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
