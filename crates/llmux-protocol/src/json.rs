//! Writing JSON: request bodies sent upstream, answers and stream events sent to clients.

use serde::Serialize;

/// The JSON serde_json would write, byte for byte, with strings escaped many bytes at a time
/// (sonic-rs). serde_json escapes a byte at a time, about 9.5 instructions a byte: with a
/// 37 KB prompt, writing the upstream request was 40% of the request's instructions
/// (callgrind), where a coding agent's prompts are often that long.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    // Room for a short request's body at once.
    let mut out = Vec::with_capacity(512);
    sonic_rs::to_writer(&mut out, value).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Append `value`'s JSON to `out`, as [`to_vec`] writes it. For what llmux itself builds
/// (answers, stream events), whose serialization cannot fail: a map with non-string keys
/// or a float that is not finite would be a bug, so it panics as `expect` would.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    sonic_rs::to_writer(out, value).expect("serializable");
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    #[test]
    fn writes_what_serde_json_writes() {
        let tricky = "quote \" backslash \\ / tab \t nl \n nul \u{0} bell \u{7} del \u{7f} \
                      é 😀 \u{2028} \u{2029} </script> \u{fffd}";
        let values = [
            json!({"s": tricky, "n": [0, -1, 1.5, 0.7, 1e-3, 1.5e300, -0.0, u64::MAX, i64::MIN],
                   "b": [true, false, null], "o": {"z": 1, "a": {"": ""}}}),
            json!(tricky.repeat(100)),
            json!([]),
            json!({}),
        ];
        for v in &values {
            let ours = super::to_vec(v).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(v).unwrap()
            );
        }
        let v: Value =
            serde_json::from_str(r#"{"big": 12345678901234567890123, "x": 1.0}"#).unwrap();
        assert_eq!(
            String::from_utf8(super::to_vec(&v).unwrap()).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
    }
}
