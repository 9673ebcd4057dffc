//! Property tests over untrusted bytes: whatever an upstream (or a client) sends, every
//! decoder and renderer returns a value or an error, never a panic. Real recordings, mutated
//! at random, exercise the deep paths; arbitrary bytes exercise the shallow ones.

use llmux_protocol::canonical::{ResponseBuilder, StreamEvent, Usage};
use llmux_protocol::sse::SseDecoder;
use llmux_protocol::{anthropic, gemini, openai};
use proptest::prelude::*;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../llmux/tests/fixtures");
    let mut out = Vec::new();
    for sub in ["openai", "deepseek", "anthropic", "google", "openrouter"] {
        for e in std::fs::read_dir(format!("{dir}/{sub}")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "sse" || x == "json") {
                out.push(std::fs::read(p).unwrap());
            }
        }
    }
    out
}

/// Run every upstream decoder over an SSE byte stream cut into chunks, then render the events
/// for both client protocols.
fn decode_stream(bytes: &[u8], cuts: &[usize]) {
    let mut sse = SseDecoder::new(1 << 20);
    let mut events = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let end = c.clamp(start, bytes.len());
        if sse.feed(&bytes[start..end], &mut events).is_err() {
            break;
        }
        start = end;
    }
    let _ = sse.finish(&mut events);
    let mut o = openai::StreamDecoder::new();
    let mut a = anthropic::StreamDecoder::new();
    let mut g = gemini::StreamDecoder::new();
    let mut out = Vec::new();
    for e in &events {
        let _ = o.decode(&e.data, &mut out);
        let _ = a.decode(e.event.as_deref(), &e.data, &mut out);
        let _ = g.decode(&e.data, &mut out);
    }
    o.finish(&mut out);
    a.finish(&mut out);
    render(&out);
}

fn render(events: &[StreamEvent]) {
    let mut b = ResponseBuilder::new();
    let mut w = openai::render::ChunkWriter::new("gen-1", "a/b", "P", 1, false);
    let mut aw = anthropic::render::EventWriter::new("gen-1", "a/b");
    let mut buf = Vec::new();
    for e in events {
        b.push(e);
        w.event(e, &mut buf);
        aw.event(e, &mut buf);
    }
    let usage = b.usage().cloned().unwrap_or_default();
    w.usage(&usage, "0.1", false, None, &mut buf);
    aw.finish(b.finish(), &Usage::default(), "0", None, &mut buf);
    let _ = anthropic::render::content_blocks(events);
}

fn decode_whole(bytes: &[u8]) {
    if let Ok(r) = openai::decode_response(bytes) {
        render(&r.to_events());
    }
    if let Ok(ev) = anthropic::decode_response(bytes) {
        render(&ev);
    }
    if let Ok(ev) = gemini::decode_response(bytes) {
        render(&ev);
    }
    let _ = openai::decode_error_message(bytes);
}

fn parse_client(bytes: &[u8]) {
    for req in [
        openai::parse_request(bytes),
        anthropic::parse_request(bytes),
    ]
    .into_iter()
    .flatten()
    {
        let _ = openai::encode_request(
            &req,
            &openai::EncodeOptions {
                model: "m",
                stream: true,
                dialect: openai::Dialect::OpenRouter,
                stream_usage: true,
                forward_extra: true,
            },
        );
        let _ = anthropic::encode_request(
            &req,
            &anthropic::EncodeOptions {
                model: "m",
                stream: true,
                default_max_tokens: 100,
                forward_extra: true,
            },
        );
        let _ = gemini::encode_request(
            &req,
            &gemini::EncodeOptions {
                forward_extra: false,
            },
        );
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn mutate(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = b.len().max(1);
        match m {
            Mutation::Flip(i, x) => {
                if !b.is_empty() {
                    let i = i % len;
                    b[i] ^= x;
                }
            }
            Mutation::Cut(i) => b.truncate(i % len),
            Mutation::Insert(i, v) => {
                let i = i % len.min(b.len() + 1);
                b.splice(i..i, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                if !b.is_empty() {
                    let i = i % len;
                    let end = (i + n).min(b.len());
                    b.drain(i..end);
                }
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), cuts in prop::collection::vec(0usize..2048, 0..8)) {
        decode_stream(&bytes, &cuts);
        decode_whole(&bytes);
        parse_client(&bytes);
    }

    #[test]
    fn mutated_recordings_never_panic(which in any::<usize>(), muts in prop::collection::vec(mutation(), 0..6), cuts in prop::collection::vec(0usize..100_000, 0..6)) {
        let all = fixtures();
        let original = all[which % all.len()].clone();
        let bytes = mutate(original, &muts);
        decode_stream(&bytes, &cuts);
        decode_whole(&bytes);
        // Request recordings wrap the body: feed the body itself to the client parsers.
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(body) = v.get("body") {
                parse_client(body.to_string().as_bytes());
            }
        parse_client(&bytes);
    }
}

#[test]
fn every_recording_decodes_cleanly() {
    // Unmutated, the recordings must decode without errors where they are streams.
    for bytes in fixtures() {
        decode_stream(&bytes, &[]);
        decode_whole(&bytes);
    }
}
