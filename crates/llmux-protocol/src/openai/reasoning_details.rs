//! OpenRouter's `reasoning_details` array: the portable form of reasoning blocks
//! (`reasoning.text`, `reasoning.summary`, `reasoning.encrypted`).

use serde::Serialize;
use serde_json::Value;

use crate::ProtocolError;
use crate::canonical::ReasoningBlock;

/// Parse a client's `reasoning_details` (echoed back on a later turn). Consecutive text pieces
/// with the same `index` are joined into one block.
pub fn parse(v: &Value, at: &str) -> Result<Vec<ReasoningBlock>, ProtocolError> {
    let Value::Array(items) = v else {
        return Err(ProtocolError::invalid(format!("{at}: expected an array")));
    };
    let mut out: Vec<ReasoningBlock> = Vec::new();
    let mut last_index: Option<i64> = None;
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(ProtocolError::invalid(format!(
                "{at}[{i}]: expected an object"
            )));
        };
        let s = |k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let index = o.get("index").and_then(Value::as_i64);
        let format = s("format");
        let block = match o.get("type").and_then(Value::as_str) {
            Some("reasoning.text") => ReasoningBlock::Text {
                text: o
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                signature: s("signature"),
                format,
            },
            Some("reasoning.summary") => ReasoningBlock::Summary {
                summary: o
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                format,
            },
            Some("reasoning.encrypted") => ReasoningBlock::Encrypted {
                data: s("data")
                    .ok_or_else(|| ProtocolError::invalid(format!("{at}[{i}].data: required")))?,
                format,
                id: s("id"),
            },
            other => {
                return Err(ProtocolError::invalid(format!(
                    "{at}[{i}].type: unknown reasoning detail type {other:?}"
                )));
            }
        };
        let same_block = index.is_some() && index == last_index;
        last_index = index;
        if same_block
            && let (
                Some(ReasoningBlock::Text {
                    text, signature, ..
                }),
                ReasoningBlock::Text {
                    text: more,
                    signature: sig,
                    ..
                },
            ) = (out.last_mut(), &block)
        {
            text.push_str(more);
            if sig.is_some() {
                signature.clone_from(sig);
            }
            continue;
        }
        out.push(block);
    }
    Ok(out)
}

/// One `reasoning_details` item as rendered to clients.
#[derive(Serialize)]
#[serde(tag = "type")]
pub enum Detail<'a> {
    #[serde(rename = "reasoning.text")]
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<&'a str>,
        format: Option<&'a str>,
        index: usize,
    },
    #[serde(rename = "reasoning.summary")]
    Summary {
        summary: &'a str,
        format: Option<&'a str>,
        index: usize,
    },
    #[serde(rename = "reasoning.encrypted")]
    Encrypted {
        data: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        format: Option<&'a str>,
        index: usize,
    },
}

pub fn render(b: &ReasoningBlock, index: usize) -> Detail<'_> {
    match b {
        ReasoningBlock::Text {
            text,
            signature,
            format,
        } => Detail::Text {
            text,
            signature: signature.as_deref(),
            format: format.as_deref(),
            index,
        },
        ReasoningBlock::Summary { summary, format } => Detail::Summary {
            summary,
            format: format.as_deref(),
            index,
        },
        ReasoningBlock::Encrypted { data, format, id } => Detail::Encrypted {
            data,
            id: id.as_deref(),
            format: format.as_deref(),
            index,
        },
    }
}

/// Decode `reasoning_details` from an upstream (an OpenRouter-style provider); unknown item
/// types are skipped rather than failing the response.
pub fn decode_lenient(v: &Value) -> Vec<(Option<i64>, ReasoningBlock)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let o = item.as_object()?;
            let s = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let index = o.get("index").and_then(Value::as_i64);
            let format = s("format");
            let b = match o.get("type")?.as_str()? {
                "reasoning.text" => ReasoningBlock::Text {
                    text: o
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    signature: s("signature"),
                    format,
                },
                "reasoning.summary" => ReasoningBlock::Summary {
                    summary: o
                        .get("summary")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    format,
                },
                "reasoning.encrypted" => ReasoningBlock::Encrypted {
                    data: s("data")?,
                    format,
                    id: s("id"),
                },
                _ => return None,
            };
            Some((index, b))
        })
        .collect()
}
