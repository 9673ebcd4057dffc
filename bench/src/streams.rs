//! Streaming through llmux against the simulated provider called directly: time to first
//! token added, per-chunk cost on long streams, and 10,000 concurrent slow streams (llmux's
//! resident memory and CPU while they are open).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// llmux's root URL.
    #[arg(long)]
    llmux: String,
    /// The simulated provider's root URL (the same upstream, called directly).
    #[arg(long)]
    direct: String,
    #[arg(long)]
    key: String,
    /// llmux's process id (for memory and CPU).
    #[arg(long)]
    pid: u32,
    /// Requests per latency sample.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Concurrent slow streams.
    #[arg(long, default_value_t = 10_000)]
    streams: usize,
    /// A model whose upstream speaks HTTP/2 (as providers reached over TLS do): the
    /// concurrent slow streams are measured again through it, sharing upstream connections.
    #[arg(long)]
    http2_model: Option<String>,
}

/// The gateway's models and the upstream names (with simulator directives) behind them; the
/// benchmark's llmux configuration maps one to the other.
pub const SHORT: (&str, &str) = ("deepseek/deepseek-v3.2", "deepseek-v3.2+tokens=50");
pub const LONG: (&str, &str) = ("z-ai/glm-5", "glm-5+tokens=4000");
pub const SLOW: (&str, &str) = (
    "moonshotai/kimi-k2.5",
    "kimi-k2.5+ttft=20+tps=0.5+tokens=60",
);

struct Timing {
    ttft: Duration,
    total: Duration,
    chunks: usize,
}

async fn stream_once(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    model: &str,
) -> anyhow::Result<Timing> {
    let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "stream please"}]});
    let started = Instant::now();
    let r = client.post(url).bearer_auth(key).json(&body).send().await?;
    anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
    let mut ttft = None;
    let mut chunks = 0;
    let mut pending = Vec::new();
    let mut s = r.bytes_stream();
    while let Some(b) = s.next().await {
        pending.extend_from_slice(&b?);
        while ttft.is_none()
            && let Some(end) = pending.windows(2).position(|w| w == b"\n\n")
        {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            for line in text.lines() {
                let Some(data) = line.strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(data)?;
                if v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
                {
                    chunks += 1;
                    ttft.get_or_insert_with(|| started.elapsed());
                    // What follows starts an event: keep a boundary before it.
                    pending.splice(0..0, *b"\n\n");
                }
            }
        }
        if ttft.is_some() {
            // After the first token, events are counted, not parsed: the client's own work
            // per event would otherwise be counted as llmux's.
            chunks += pending.windows(8).filter(|w| w == b"\n\ndata: ").count();
            let keep = pending.len().saturating_sub(7);
            pending.drain(..keep);
        }
    }
    Ok(Timing {
        ttft: ttft.unwrap_or_default(),
        total: started.elapsed(),
        chunks,
    })
}

fn pct(mut v: Vec<Duration>, q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Resident memory (KiB) and CPU time (clock ticks) of a process.
fn usage(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (rss, ticks)
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let via = format!("{}/api/v1/chat/completions", a.llmux.trim_end_matches('/'));
    let direct = format!("{}/v1/chat/completions", a.direct.trim_end_matches('/'));

    // Time to first token, interleaved so both paths see the same machine.
    let (mut through, mut straight) = (Vec::new(), Vec::new());
    for _ in 0..a.samples {
        through.push(stream_once(&client, &via, &a.key, SHORT.0).await?.ttft);
        straight.push(stream_once(&client, &direct, &a.key, SHORT.1).await?.ttft);
    }
    println!();
    println!("Streams ({} samples each)", a.samples);
    println!(
        "time to first token, p50: direct {:.0} us, through llmux {:.0} us, added {:.0} us (p99 {:.0} vs {:.0} us)",
        us(pct(straight.clone(), 0.5)),
        us(pct(through.clone(), 0.5)),
        us(pct(through.clone(), 0.5)) - us(pct(straight.clone(), 0.5)),
        us(pct(straight, 0.99)),
        us(pct(through, 0.99)),
    );

    // Long streams: the cost of each chunk passing through.
    let (mut through, mut straight, mut chunks) = (Vec::new(), Vec::new(), 0);
    for _ in 0..20 {
        let t = stream_once(&client, &via, &a.key, LONG.0).await?;
        chunks = t.chunks;
        through.push(t.total);
        straight.push(stream_once(&client, &direct, &a.key, LONG.1).await?.total);
    }
    let added = us(pct(through.clone(), 0.5)) - us(pct(straight.clone(), 0.5));
    println!(
        "long stream of {chunks} chunks, p50: direct {:.1} ms, through llmux {:.1} ms: {:.2} us added per chunk",
        us(pct(straight, 0.5)) / 1000.0,
        us(pct(through, 0.5)) / 1000.0,
        added / chunks.max(1) as f64
    );

    // Many slow streams at once.
    // HTTP/2 first: it needs less memory, so the resident size measured after it (memory
    // freed stays with the process for reuse) says little about its own needs.
    if let Some(model) = &a.http2_model {
        concurrent(&a, &via, model, "HTTP/2 upstream").await?;
        // Let the first set's connections close (each holds a file descriptor).
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    concurrent(&a, &via, SLOW.0, "HTTP/1.1 upstream").await
}

/// `a.streams` slow streams of `model` open at once: llmux's resident memory and CPU.
async fn concurrent(a: &Args, via: &str, model: &str, label: &str) -> anyhow::Result<()> {
    let (rss_before, _) = usage(a.pid);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(a.streams);
    let slow = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()?;
    for i in 0..a.streams {
        // Open them in waves (a thousand per 100 ms), as clients arrive, not in one burst.
        if i > 0 && i % 1000 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (client, url, key, model, opened, failed) = (
            slow.clone(),
            via.to_string(),
            a.key.clone(),
            model.to_string(),
            opened.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "slowly"}]});
            match client.post(&url).bearer_auth(&key).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    let mut s = r.bytes_stream();
                    let mut first = true;
                    while let Some(Ok(b)) = s.next().await {
                        if first && b.windows(9).any(|w| w == b"\"content\"") {
                            first = false;
                            opened.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(r) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("slow stream refused: {}", r.status());
                    }
                }
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("slow stream failed: {e}");
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < a.streams
        && started.elapsed() < Duration::from_secs(90)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let open_after = started.elapsed();
    let (_, t0) = usage(a.pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, t1) = usage(a.pid);
    let ticks_per_sec = 100.0;
    println!(
        "{} concurrent slow streams, {label} ({} streaming, {} failed, all open after {:.1} s): llmux RSS {:.0} MB (before {:.0} MB), CPU {:.0}% of one core",
        a.streams,
        opened.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        open_after.as_secs_f64(),
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        (t1 - t0) as f64 / ticks_per_sec / 5.0 * 100.0
    );
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0
        && let Some(limit) = open_files_limit(a.pid)
    {
        // What failures mean here: over HTTP/1.1 each stream holds two of llmux's
        // descriptors (the client's connection and its own upstream connection).
        println!(
            "  ({failed} failed: llmux may hold {limit} open files, and {} streams over HTTP/1.1 need about {} descriptors)",
            a.streams,
            2 * a.streams
        );
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// A process's limit on open files (the soft one, which it runs under).
fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
