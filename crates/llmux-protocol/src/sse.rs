//! Server-sent events: a bounded incremental decoder for upstream streams, and the writers
//! llmux uses for its own streams.

use crate::ProtocolError;

/// One decoded event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Incremental SSE decoder. Upstream bytes are untrusted: a line or an event larger than
/// `max_event_bytes` is an error, never an unbounded buffer.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    max_event_bytes: usize,
    started: bool,
}

/// Default bound on one event (16 MiB: a large base64 image or a long tool-call argument fits).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            event: None,
            max_event_bytes,
            started: false,
        }
    }

    /// Feed bytes; complete events are appended to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), ProtocolError> {
        if !self.started && !chunk.is_empty() {
            self.started = true;
            // A UTF-8 byte-order mark may open the stream.
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                chunk = rest;
            }
        }
        while let Some(pos) = memchr::memchr(b'\n', chunk) {
            let (head, rest) = chunk.split_at(pos);
            chunk = &rest[1..];
            if self.line.is_empty() {
                self.process_line(strip_cr(head), out)?;
            } else {
                self.check_len(head.len())?;
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.process_line(strip_cr(&line), out)?;
            }
        }
        if !chunk.is_empty() {
            self.check_len(chunk.len())?;
            self.line.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// The stream ended: dispatch a last event that was not followed by a blank line.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), ProtocolError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(strip_cr(&line), out)?;
        }
        self.dispatch(out)
    }

    fn check_len(&self, more: usize) -> Result<(), ProtocolError> {
        if self.line.len() + self.data.len() + more > self.max_event_bytes {
            return Err(ProtocolError::upstream(format!(
                "stream event larger than {} bytes",
                self.max_event_bytes
            )));
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), ProtocolError> {
        if line.is_empty() {
            return self.dispatch(out);
        }
        if line[0] == b':' {
            return Ok(()); // comment / keep-alive
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                self.check_len(value.len() + 1)?;
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event = Some(String::from_utf8_lossy(value).into_owned());
            }
            _ => {} // id, retry and unknown fields carry nothing llmux needs
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) -> Result<(), ProtocolError> {
        let event = self.event.take();
        if !self.has_data {
            return Ok(());
        }
        self.has_data = false;
        let data = String::from_utf8(std::mem::take(&mut self.data))
            .map_err(|_| ProtocolError::upstream("stream event is not valid UTF-8"))?;
        out.push(SseEvent { event, data });
        Ok(())
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Append `data: <json>\n\n`.
pub fn write_data(out: &mut Vec<u8>, json: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// Append `data: <value as JSON>\n\n`, serializing straight into `out` (compact JSON has no
/// line breaks, so it is one data line).
pub fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    crate::json::write(out, value);
    out.extend_from_slice(b"\n\n");
}

/// Append `event: <name>\ndata: <json>\n\n`.
pub fn write_event(out: &mut Vec<u8>, name: &str, json: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data(out, json);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn splits_across_chunk_boundaries_and_line_endings() {
        let evs = decode_all(&[
            b"\xEF\xBB\xBF: keep-alive\n\nda",
            b"ta: {\"a\":1}\r\n\r\nevent: ping\ndata: x\ndata: y\n\n",
            b"data: [DONE]",
        ]);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].event.as_deref(), Some("ping"));
        assert_eq!(evs[1].data, "x\ny");
        assert_eq!(evs[2].data, "[DONE]");
    }

    #[test]
    fn bounds_event_size() {
        let mut d = SseDecoder::new(16);
        let mut out = Vec::new();
        assert!(d.feed(b"data: 0123456789abcdefgh", &mut out).is_err());
        let mut d = SseDecoder::new(16);
        assert!(
            d.feed(b"data: 0123456789\ndata: 0123456789\n", &mut out)
                .is_err()
        );
    }
}
