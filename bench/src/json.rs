//! `llmux-bench json`: serde_json and sonic-rs side by side on the documents llmux parses and
//! writes (a stream chunk, a short request body, an upstream answer, request bodies from 1 KB
//! to a 37 KB prompt), in the workspace's release build (fat LTO): what `llmux-protocol`'s
//! choice of sonic-rs for both (`error::parse_json`, `json.rs`) rests on.
//!
//! Timed by the clock, in alternating rounds, the median kept: instructions counted by
//! callgrind weigh a 32-byte vector instruction as much as a one-byte one.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rounds per measurement (each parser takes its turn in every round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Time per turn.
    #[arg(long, default_value_t = 100)]
    turn_ms: u64,
}

/// Nanoseconds per call of `f`, over about `turn`.
fn per_call(turn: Duration, mut f: impl FnMut()) -> f64 {
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < turn {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median nanoseconds per call of `a` and of `b`, taking turns.
fn side_by_side(args: &Args, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    let turn = Duration::from_millis(args.turn_ms);
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        ta.push(per_call(turn, &mut a));
        tb.push(per_call(turn, &mut b));
    }
    (median(ta), median(tb))
}

fn request_body(text: &str) -> String {
    format!(
        r#"{{"model":"openai/gpt-4o-mini","max_tokens":64,"messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{text}"}}]}}"#
    )
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let mut documents = vec![
        (
            "stream chunk",
            r#"{"choices":[{"delta":{"content":" juliet"},"finish_reason":null,"index":0,"logprobs":null}],"created":1795946532,"id":"chatcmpl-sim-000000011dc32972","model":"deepseek-v3.2+tokens=64","object":"chat.completion.chunk","system_fingerprint":"fp_sim"}"#.to_string(),
        ),
        ("short request", request_body("Say hello to the benchmark.")),
        (
            "upstream answer",
            include_str!("../gateway/upstream.json").trim().to_string(),
        ),
    ];
    for kb in [1, 4, 16] {
        let text = "Here is the file to change. ".repeat(kb * 1024 / 28);
        documents.push(("request", request_body(&text)));
    }
    let system =
        "You are a careful coding agent. Follow the repository's conventions. ".repeat(480);
    let user = "Here is the file to change. ".repeat(150);
    documents.push((
        "long prompt",
        format!(
            r#"{{"model":"openai/gpt-4o-mini","max_tokens":64,"messages":[{{"role":"system","content":"{system}"}},{{"role":"user","content":"{user}"}}]}}"#
        ),
    ));

    println!(
        "{:<16} {:>7}  {:>28}  {:>28}  {:>28}",
        "document",
        "bytes",
        "parse into Value (ns)",
        "parse, skipping all (ns)",
        "write the Value (ns)"
    );
    println!(
        "{:<16} {:>7}  {:>28}  {:>28}  {:>28}",
        "", "", "serde_json / sonic-rs", "serde_json / sonic-rs", "serde_json / sonic-rs"
    );
    for (name, doc) in &documents {
        let bytes = doc.as_bytes();
        // Both parsers must read the document alike before their times mean anything.
        let theirs: Value = serde_json::from_slice(bytes)?;
        let ours: Value = sonic_rs::from_slice(bytes)?;
        anyhow::ensure!(ours == theirs, "sonic-rs read {name} differently");

        let value = side_by_side(
            &args,
            || drop(black_box(serde_json::from_slice::<Value>(bytes).ok())),
            || drop(black_box(sonic_rs::from_slice::<Value>(bytes).ok())),
        );
        let skip = side_by_side(
            &args,
            || {
                black_box(serde_json::from_slice::<IgnoredAny>(bytes).ok());
            },
            || {
                black_box(sonic_rs::from_slice::<IgnoredAny>(bytes).ok());
            },
        );
        let write = side_by_side(
            &args,
            || {
                let mut out = Vec::with_capacity(bytes.len());
                serde_json::to_writer(&mut out, &theirs).expect("writes");
                black_box(out);
            },
            || {
                let mut out = Vec::with_capacity(bytes.len());
                sonic_rs::to_writer(&mut out, &theirs).expect("writes");
                black_box(out);
            },
        );
        let cell = |(a, b): (f64, f64)| format!("{a:.0} / {b:.0} ({:.2})", b / a);
        println!(
            "{:<16} {:>7}  {:>28}  {:>28}  {:>28}",
            name,
            bytes.len(),
            cell(value),
            cell(skip),
            cell(write)
        );
    }
    println!("(in parentheses: sonic-rs's time as a share of serde_json's)");
    Ok(())
}
