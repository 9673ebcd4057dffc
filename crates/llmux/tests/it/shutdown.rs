//! A graceful shutdown writes every pending generation record; a crash loses none either
//! (the spool keeps them until they are written).

use serde_json::json;

use crate::harness::*;

/// The simulated provider serving `deepseek/deepseek-v3.2` as `upstream` (whose name says how
/// the simulator behaves).
fn simco(sim: &llmux_sim::SimHandle, upstream: &str) -> String {
    format!(
        "{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint(
            "deepseek/deepseek-v3.2",
            "simco",
            upstream,
            "0.28",
            "0.42",
            ""
        )
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_pending_records() {
    let sim = sim().await;
    let rest = simco(&sim, "ok");
    // A flush interval far beyond the test: only the shutdown can write the records. Three
    // serving threads, and requests at once on several connections: the records of every
    // thread are written.
    let mut gw = Gateway::start(
        "threads = 3",
        &format!("[metering]\nflush_interval_ms = 600000\n\n{rest}"),
    )
    .await;
    // Enough credits for every request's worst case held at once.
    let key = gw.create_key("t", Some("10"));
    let n = 25;
    let requests = (0..n).map(|i| {
        let (gw, key) = (&gw, &key.key);
        async move {
            let r = gw
                .post(
                    "/api/v1/chat/completions",
                    key,
                    &json!({"model": "deepseek/deepseek-v3.2", "stream": i % 2 == 0, "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            let status = r.status();
            let body = r.text().await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
    });
    futures::future::join_all(requests).await;
    let status = gw.terminate();
    assert!(status.success(), "clean exit: {status:?}\n{}", gw.log());

    let store = llmux::storage::Store::open(&gw.db_url()).await.unwrap();
    assert_eq!(store.generation_count().await.unwrap(), n);
    // Every record's charge is in the ledger: the balance is the credits minus their sum.
    let balance = store.balance(&key.account).await.unwrap();
    assert!(balance < llmux::money::Money::parse_usd("10").unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_answered_record() {
    let sim = sim().await;
    let rest = simco(&sim, "ok");
    // Nothing is written to the database during the test: only the spool keeps the records.
    let mut gw = Gateway::start(
        "",
        &format!("[metering]\nflush_interval_ms = 600000\n\n{rest}"),
    )
    .await;
    let key = gw.create_key("t", Some("1"));
    let mut ids = Vec::new();
    let mut spent = rust_decimal::Decimal::ZERO;
    for i in 0..30 {
        let r = gw
            .post(
                "/api/v1/chat/completions",
                &key.key,
                &json!({"model": "deepseek/deepseek-v3.2", "stream": i % 3 == 0, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        ids.push(generation_id(&r));
        spent += dec(&raw_number(&r.text().await.unwrap(), "cost"));
    }
    gw.kill9();
    let store = llmux::storage::Store::open(&gw.db_url()).await.unwrap();
    assert_eq!(
        store.generation_count().await.unwrap(),
        0,
        "nothing was written before the kill"
    );
    store.close().await;

    gw.restart().await;
    for id in &ids {
        let r = gw
            .get(&format!("/api/v1/generation?id={id}"), &key.key)
            .await;
        assert_eq!(r.status(), 200, "{id} survived the kill");
    }
    let k: serde_json::Value = gw
        .get("/api/v1/credits", &key.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        dec(k["data"]["balance"].as_str().unwrap()),
        dec("1") - spent,
        "{k}"
    );
    let audit: serde_json::Value =
        serde_json::from_slice(&gw.cli(&["ledger", "verify", "--json"]).stdout).unwrap();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(audit["records"], ids.len());
    // Replayed once: a second crash and start change nothing.
    gw.kill9();
    gw.restart().await;
    let audit: serde_json::Value =
        serde_json::from_slice(&gw.cli(&["ledger", "verify", "--json"]).stdout).unwrap();
    assert_eq!(audit["records"], ids.len());
    let out = gw.cli(&["rollups", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Streams whose clients left just before the shutdown are still metering when their
/// connections close: the shutdown waits for their records, and leaves nothing in the spool
/// (a spool left behind would be replayed by the next start).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_waits_for_the_records_of_streams_cut_short() {
    let sim = sim().await;
    // 200 tokens at 20 per second: ten seconds each, far beyond the test.
    let rest = simco(&sim, "ok+tps=20+tokens=200");
    let mut gw = Gateway::start(
        "threads = 2",
        &format!("[metering]\nflush_interval_ms = 600000\n\n{rest}"),
    )
    .await;
    let key = gw.create_key("t", Some("100"));
    let n = 200;
    let streams = (0..n).map(|_| {
        let (gw, key) = (&gw, &key.key);
        async move {
            let mut r = gw
                .post(
                    "/api/v1/chat/completions",
                    key,
                    &json!({"model": "deepseek/deepseek-v3.2", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            assert_eq!(r.status(), 200);
            // Read until the first token.
            let has_token = |s: &str| {
                s.match_indices("\"content\":\"")
                    .any(|(i, m)| s[i + m.len()..].chars().next().is_some_and(|c| c != '"'))
            };
            let mut seen = String::new();
            while !has_token(&seen) {
                let chunk = r.chunk().await.unwrap().expect("the stream goes on");
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            r
        }
    });
    let open = futures::future::join_all(streams).await;
    // Every client leaves mid-stream at once, and the shutdown comes right after.
    drop(open);
    let status = gw.terminate();
    assert!(status.success(), "clean exit: {status:?}\n{}", gw.log());

    let store = llmux::storage::Store::open(&gw.db_url()).await.unwrap();
    assert_eq!(store.generation_count().await.unwrap(), n);
    let spool = gw.dir.path().join("data/spool");
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
        .collect();
    assert!(left.is_empty(), "spool segments left: {left:?}");
}

/// Connections that are open but have sent nothing (or sit idle between requests) do not
/// hold up a graceful stop: it ends well inside its grace period for open requests (10 s).
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_do_not_hold_up_sigterm() {
    let sim = sim().await;
    let rest = simco(&sim, "ok");
    let mut gw = Gateway::start("threads = 2", &rest).await;
    let key = gw.create_key("t", None);
    // One connection kept alive after a request, and four that never send a byte.
    let client = reqwest::Client::new();
    let r = client
        .post(gw.url("/api/v1/chat/completions"))
        .bearer_auth(&key.key)
        .json(&json!({"model": "deepseek/deepseek-v3.2", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| gw.terminate());
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "the stop took {took:?}"
    );
    drop(silent);
}

/// A stream still open when the shutdown's grace period ends is ended with an error event,
/// and recorded and billed for what it produced before the process exits (not dropped with
/// its thread).
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_still_open_after_the_grace_period_is_ended_and_billed() {
    let sim = sim().await;
    // 200 tokens at 20 per second: ten seconds, far beyond the grace period.
    let rest = simco(&sim, "ok+tps=20+tokens=200");
    let mut gw = Gateway::start("shutdown_grace_ms = 300", &rest).await;
    let key = gw.create_key("t", Some("100"));
    let mut r = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "deepseek/deepseek-v3.2", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    while seen.matches("\"content\":\"").count() < 4 {
        let chunk = r.chunk().await.unwrap().expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let started = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| gw.terminate());
    let took = started.elapsed();
    assert!(status.success(), "clean exit: {status:?}\n{}", gw.log());
    assert!(
        took < std::time::Duration::from_secs(4),
        "the stop took {took:?}"
    );
    while let Ok(Some(chunk)) = r.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        sse_data(&seen)
            .iter()
            .any(|d| d.contains("llmux is shutting down")),
        "the stream ends with an error event: {seen}"
    );

    let recorded: Vec<(i64, i64, i64, i64)> = gw
        .rows_once_written("SELECT status, cancelled, tokens_completion, cost FROM generations")
        .await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (status, cancelled, completion, cost) = recorded[0];
    assert_eq!((status, cancelled), (503, 0));
    assert!(
        (3..200).contains(&completion) && cost > 0,
        "billed for what was produced: {completion} tokens, {cost}"
    );
}

/// A whole answer still awaited from its upstream when the grace period ends gets a 503 and a
/// record saying so, with nothing billed (not a dropped connection and a record of a client
/// that left).
#[tokio::test(flavor = "multi_thread")]
async fn a_whole_answer_still_awaited_after_the_grace_period_gets_a_503() {
    let sim = sim().await;
    // The upstream answers in 20 s, far beyond the grace period.
    let rest = simco(&sim, "ok+ttft=20000");
    let mut gw = Gateway::start("shutdown_grace_ms = 300", &rest).await;
    let key = gw.create_key("t", Some("100"));
    let (url, client) = (gw.url("/api/v1/chat/completions"), reqwest::Client::new());
    let answer = tokio::spawn(async move {
        let r = client
            .post(url)
            .bearer_auth(&key.key)
            .json(&json!({"model": "deepseek/deepseek-v3.2", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    while sim.state.requests().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let status = tokio::task::block_in_place(|| gw.terminate());
    assert!(status.success(), "clean exit: {status:?}\n{}", gw.log());
    let (code, body) = answer.await.unwrap();
    assert_eq!(code, 503, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("llmux is shutting down")),
        "{body}"
    );

    let recorded: Vec<(i64, i64, i64)> = gw
        .rows_once_written("SELECT status, cancelled, cost FROM generations")
        .await;
    assert_eq!(recorded, vec![(503, 0, 0)]);
}
