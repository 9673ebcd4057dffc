//! Chat completions through the gateway: whole answers, streams, tool calls, exact cost, and
//! the generation record.

use serde_json::{Value, json};

use crate::harness::*;

const MODEL: &str = "deepseek/deepseek-v3.2";

async fn gateway_with_sim(server_extra: &str) -> (Gateway, llmux_sim::SimHandle) {
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "simco", "sim-model", "0.28", "0.42", "")
    );
    (Gateway::start(server_extra, &rest).await, sim)
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_is_relayed_and_costed_exactly() {
    let (gw, sim) = gateway_with_sim("").await;
    let key = gw.create_key("t", None);
    let resp = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "echo: hello there world"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let gen_id = generation_id(&resp);
    let body = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], gen_id);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], MODEL);
    assert_eq!(v["provider"], "simco provider");
    assert_eq!(v["choices"][0]["message"]["content"], "hello there world");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let (p, c) = (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(c, 3);
    let expected = cost(&[(p, "0.28"), (c, "0.42")]);
    assert_eq!(dec(&raw_number(&body, "cost")), expected, "{body}");

    // The upstream got the provider's model name, with llmux-only fields stripped.
    let sent = &sim.state.requests()[0];
    assert_eq!(sent.body["model"], "sim-model");

    let g = gw
        .get(&format!("/api/v1/generation?id={gen_id}"), &key.key)
        .await;
    assert_eq!(g.status(), 200);
    let g: Value = g.json().await.unwrap();
    let d = &g["data"];
    assert_eq!(d["id"], gen_id);
    assert_eq!(d["model"], MODEL);
    assert_eq!(d["provider_name"], "simco provider");
    assert_eq!(d["tokens_prompt"], p);
    assert_eq!(d["tokens_completion"], c);
    assert_eq!(dec(d["total_cost_usd"].as_str().unwrap()), expected);
    assert_eq!(d["streamed"], false);
    assert_eq!(d["cancelled"], false);
    assert_eq!(d["finish_reason"], "stop");
    // Same routes under /v1 for OpenAI SDK users.
    let again = gw
        .get(&format!("/v1/generation?id={gen_id}"), &key.key)
        .await;
    assert_eq!(again.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_sends_deltas_then_one_usage_chunk() {
    let (gw, _sim) = gateway_with_sim("").await;
    let key = gw.create_key("t", None);
    let resp = gw
        .post(
            "/v1/chat/completions",
            &key.key,
            &json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "echo: a b c d"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let gen_id = generation_id(&resp);
    let body = resp.text().await.unwrap();
    let data = sse_data(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "a b c d");
    for c in &chunks {
        assert_eq!(c["id"], gen_id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], MODEL);
    }
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let usage_chunks: Vec<&Value> = chunks.iter().filter(|c| c.get("usage").is_some()).collect();
    assert_eq!(usage_chunks.len(), 1, "exactly one usage chunk");
    let u = usage_chunks[0];
    assert_eq!(u["choices"].as_array().unwrap().len(), 0);
    assert!(std::ptr::eq(u, chunks.last().unwrap()), "usage comes last");
    let (p, c) = (
        u["usage"]["prompt_tokens"].as_u64().unwrap(),
        u["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(c, 4);
    let usage_line = data.iter().rev().nth(1).unwrap();
    assert_eq!(
        dec(&raw_number(usage_line, "cost")),
        cost(&[(p, "0.28"), (c, "0.42")])
    );

    let g: Value = gw
        .get(&format!("/api/v1/generation?id={gen_id}"), &key.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["data"]["streamed"], true);
    assert_eq!(g["data"]["tokens_completion"], c);
    assert!(g["data"]["time_to_first_token"].as_i64().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_tool_call_arrives_in_openai_shape() {
    let (gw, _sim) = gateway_with_sim("").await;
    let key = gw.create_key("t", None);
    let body = json!({
        "model": MODEL, "stream": true,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    });
    let text = gw
        .post("/api/v1/chat/completions", &key.key, &body)
        .await
        .text()
        .await
        .unwrap();
    let chunks: Vec<Value> = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let id = calls[0]["id"].as_str().unwrap();
    assert!(!id.is_empty());
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "sim"})
    );
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");

    // The tool result goes back and the model answers with text.
    let follow = json!({
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": "get_weather", "arguments": args}}]},
            {"role": "tool", "tool_call_id": id, "content": "sunny"},
        ],
        "tools": body["tools"],
    });
    let v: Value = gw
        .post("/api/v1/chat/completions", &key.key, &follow)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "The tool returned: sunny"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credits_are_decremented_exactly_and_exhaustion_is_402() {
    let (gw, _sim) = gateway_with_sim("").await;
    // 0.00002 USD: a few requests' worth at these prices, with a small max_tokens.
    let key = gw.create_key("paying", Some("0.00002"));
    let mut spent = rust_decimal::Decimal::ZERO;
    let mut refused = 0;
    for _ in 0..40 {
        let r = gw
            .post(
                "/api/v1/chat/completions",
                &key.key,
                &json!({"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "echo: one two three four"}]}),
            )
            .await;
        match r.status().as_u16() {
            200 => spent += dec(&raw_number(&r.text().await.unwrap(), "cost")),
            402 => {
                let msg = error_message(r, 402).await;
                assert!(msg.contains("Insufficient credits"), "{msg}");
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(refused > 0, "credits ran out");
    let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
    let balance = dec(k["data"]["account"]["balance"].as_str().unwrap());
    assert_eq!(balance, dec("0.00002") - spent);
    assert!(balance >= rust_decimal::Decimal::ZERO);
    assert_eq!(dec(&k["data"]["usage"].to_string()), spent);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_without_usage_is_counted_with_the_tokenizer() {
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider("quiet", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "quiet", "m+no_usage", "1", "2", "")
    );
    let gw = Gateway::start("", &rest).await;
    let key = gw.create_key("t", None);
    for stream in [false, true] {
        let r = gw
            .post(
                "/api/v1/chat/completions",
                &key.key,
                &json!({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "echo: counting these words"}]}),
            )
            .await;
        let id = generation_id(&r);
        let _ = r.text().await.unwrap();
        let g: Value = gw
            .get(&format!("/api/v1/generation?id={id}"), &key.key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(g["data"]["usage_estimated"], true, "stream={stream}");
        let expected = llmux::metering::estimate::count("counting these words");
        assert_eq!(
            g["data"]["tokens_completion"], expected,
            "counted with the o200k tokenizer"
        );
        assert!(g["data"]["tokens_prompt"].as_u64().unwrap() > 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_mid_stream_is_recorded_as_cancelled_and_billed() {
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider("slow", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "slow", "m+tps=20+tokens=200", "1", "1", "")
    );
    let gw = Gateway::start("", &rest).await;
    let key = gw.create_key("t", None);
    let mut resp = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "tell me a long story"}]}),
        )
        .await;
    let id = generation_id(&resp);
    let mut got = 0;
    while got < 5 {
        if resp.chunk().await.unwrap().is_some() {
            got += 1;
        }
    }
    drop(resp);
    // The pipeline notices, stops the upstream and records what was produced.
    let record = gw.wait_for_generation(&id, &key.key).await;
    let d = &record["data"];
    assert_eq!(d["cancelled"], true, "{record}");
    let produced = d["tokens_completion"].as_u64().unwrap();
    assert!(
        produced > 0 && produced < 200,
        "billed for what was produced: {produced}"
    );
    assert!(d["total_cost"].as_f64().unwrap() > 0.0);
}

/// While the first token is awaited, the client gets keep-alive comments (as OpenRouter sends
/// them); a client that leaves then is recorded as cancelled, with nothing to bill.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_first_token_is_awaited_with_keepalive_comments() {
    let sim = sim().await;
    let rest = format!(
        "{}{}{}",
        provider("slow", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "slow", "m+ttft=650+tokens=3", "1", "1", ""),
        endpoint("z-ai/glm-5", "slow", "m+ttft=20000", "1", "1", ""),
    );
    let gw = Gateway::start("stream_keepalive_ms = 100", &rest).await;
    let key = gw.create_key("t", None);
    let body = |model: &str| json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]});

    let resp = gw
        .post("/api/v1/chat/completions", &key.key, &body(MODEL))
        .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let first_data = text.find("data: ").expect("content follows");
    let comments = text[..first_data]
        .matches(": OPENROUTER PROCESSING\n\n")
        .count();
    assert!(
        comments >= 3,
        "keep-alive comments before the first token: {text:?}"
    );
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");

    let mut resp = gw
        .post("/api/v1/chat/completions", &key.key, &body("z-ai/glm-5"))
        .await;
    assert_eq!(resp.status(), 200);
    let id = generation_id(&resp);
    let chunk = resp.chunk().await.unwrap().unwrap();
    assert!(chunk.starts_with(b": OPENROUTER PROCESSING"), "{chunk:?}");
    drop(resp);
    let record = gw.wait_for_generation(&id, &key.key).await;
    let d = &record["data"];
    assert_eq!(d["cancelled"], true, "{record}");
    assert_eq!(d["tokens_completion"], 0, "{record}");
    assert_eq!(d["total_cost"].as_f64(), Some(0.0), "{record}");
}

/// When keep-alive comments have already committed the response and then every endpoint
/// fails before its first token, the stream ends with an error event (OpenRouter's mid-stream
/// error chunk) that names the generation, and the record says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_whose_endpoints_all_fail_after_keepalives_ends_with_an_error_event() {
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider(
            "stalling",
            &format!("{}/v1", sim.base_url()),
            "timeout_secs = 1"
        ),
        endpoint(MODEL, "stalling", "m+stall=0", "1", "1", ""),
    );
    let gw = Gateway::start("stream_keepalive_ms = 100", &rest).await;
    let key = gw.create_key("t", None);
    let body =
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]});

    let resp = gw.post("/api/v1/chat/completions", &key.key, &body).await;
    assert_eq!(resp.status(), 200, "committed by the keep-alive comments");
    let id = generation_id(&resp);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with(": OPENROUTER PROCESSING"),
        "keep-alive comments first: {text:?}"
    );
    let data = sse_data(&text);
    assert_eq!(data.len(), 2, "the error, then the end: {text:?}");
    assert_eq!(data[1], "[DONE]");
    let event: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(event["id"], id.as_str(), "{event}");
    assert_eq!(event["error"]["code"], 408, "a timeout: {event}");
    assert_eq!(
        event["error"]["metadata"]["error_type"], "timeout",
        "{event}"
    );
    assert_eq!(event["choices"][0]["finish_reason"], "error", "{event}");

    let record = gw.wait_for_generation(&id, &key.key).await;
    let d = &record["data"];
    assert_eq!(d["tokens_completion"], 0, "{record}");
    assert_eq!(d["total_cost"].as_f64(), Some(0.0), "{record}");
}

/// A client that stops reading a stream (and keeps its connection open) is given up on after
/// `stream_send_timeout_ms`: the upstream stops, what was produced is billed, and the
/// connection is closed rather than held.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_given_up_on() {
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider("fast", &format!("{}/v1", sim.base_url()), ""),
        // Far more than the sockets' buffers hold between the two ends (megabytes).
        endpoint(MODEL, "fast", "m+tokens=300000", "1", "1", ""),
    );
    let gw = Gateway::start("stream_send_timeout_ms = 300", &rest).await;
    let key = gw.create_key("t", None);
    let body =
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw.post("/api/v1/chat/completions", &key.key, &body).await;
    assert_eq!(resp.status(), 200);
    let id = generation_id(&resp);
    // Nothing of the body is read: the buffers fill, and llmux waits for the client.
    let record = gw.wait_for_generation(&id, &key.key).await;
    let d = &record["data"];
    assert_eq!(d["cancelled"], true, "{record}");
    let produced = d["tokens_completion"].as_u64().unwrap();
    assert!(produced > 0 && produced < 300_000, "{record}");
    assert!(d["total_cost"].as_f64().unwrap() > 0.0, "{record}");
    // The connection was closed: reading what the buffers held ends, without the stream's
    // end, instead of waiting.
    let rest = tokio::time::timeout(std::time::Duration::from_secs(20), resp.bytes())
        .await
        .expect("the connection is closed, not held");
    assert!(rest.is_err(), "the stream was cut, not finished");
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_endpoints_speak_openrouter_shapes() {
    let (gw, _sim) = gateway_with_sim("").await;
    let list: Value = gw
        .get_public_json("/api/v1/models?offset=0&limit=500")
        .await;
    assert_eq!(list["total_count"], 1);
    let m = &list["data"][0];
    assert_eq!(m["id"], MODEL);
    assert_eq!(m["pricing"]["prompt"], "0.00000028");
    assert_eq!(m["pricing"]["completion"], "0.00000042");
    assert_eq!(
        m["links"]["details"],
        format!("/api/v1/models/{MODEL}/endpoints")
    );
    assert_eq!(m["origin_country"], "CN");
    let eps: Value = gw
        .get_public_json(&format!("/api/v1/models/{MODEL}/endpoints"))
        .await;
    let e = &eps["data"]["endpoints"][0];
    assert_eq!(e["tag"], "simco");
    assert_eq!(e["provider_name"], "simco provider");
    assert_eq!(e["pricing"]["prompt"], "0.00000028");
    let missing = gw
        .get_public("/api/v1/models/nobody/nothing/endpoints")
        .await;
    assert_eq!(missing.status(), 404);
    let health: Value = gw.get_public_json("/healthz").await;
    assert_eq!(health["status"], "ok");
}

/// Clients speaking HTTP/2 without TLS (prior knowledge, as proxies in front of llmux may)
/// are served as well as HTTP/1.1 ones, streams included: the server tells them apart by the
/// first bytes of the connection.
#[tokio::test(flavor = "multi_thread")]
async fn http2_and_http1_clients_are_both_served() {
    let (gw, _sim) = gateway_with_sim("").await;
    let key = gw.create_key("t", None);
    llmux::init_tls();
    for (http2, version) in [
        (false, reqwest::Version::HTTP_11),
        (true, reqwest::Version::HTTP_2),
    ] {
        let mut client = reqwest::Client::builder();
        if http2 {
            client = client.http2_prior_knowledge();
        } else {
            client = client.http1_only();
        }
        let client = client.build().unwrap();
        for stream in [false, true] {
            let resp = client
                .post(gw.url("/api/v1/chat/completions"))
                .bearer_auth(&key.key)
                .json(&json!({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": "echo: over the wire"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "http2={http2} stream={stream}");
            assert_eq!(resp.version(), version);
            let body = resp.text().await.unwrap();
            if stream {
                assert!(body.contains("data: [DONE]"), "{body}");
                assert!(body.contains("\"usage\""), "{body}");
            } else {
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["choices"][0]["message"]["content"], "over the wire");
            }
        }
    }
}

/// An HTTP/2 upstream caps the streams of one connection (hyper's server, the simulator's,
/// at 200), and hyper's pool keeps one HTTP/2 connection per host: more long streams than
/// the cap, from one serving thread, must still all start (llmux opens more connections).
#[tokio::test(flavor = "multi_thread")]
async fn more_streams_than_one_http2_connection_carries_all_start() {
    const STREAMS: usize = 250;
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider(
            "simco",
            &format!("{}/v1", sim.base_url()),
            "http2_prior_knowledge = true"
        ),
        // Sixty tokens at two a second: every stream stays open for the whole test.
        endpoint(
            MODEL,
            "simco",
            "sim-model+ttft=5+tps=2+tokens=60",
            "0.28",
            "0.42",
            ""
        )
    );
    let gw = Gateway::start("threads = 1", &rest).await;
    let key = gw.create_key("t", None);
    let client = reqwest::Client::new();
    let started = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let (client, url, key, started) = (
            client.clone(),
            gw.url("/api/v1/chat/completions"),
            key.key.clone(),
            started.clone(),
        );
        streams.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "slowly"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.bytes_stream();
            let mut seen = Vec::new();
            while let Some(chunk) = futures::StreamExt::next(&mut body).await {
                seen.extend_from_slice(&chunk.unwrap());
                if seen.windows(10).any(|w| w == b"\"content\":") {
                    started.add_permits(1);
                    break;
                }
            }
            // Held open until the test ends.
            std::future::pending::<()>().await;
        }));
    }
    let all = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        started.acquire_many(STREAMS as u32),
    )
    .await;
    let opened = started.available_permits();
    for s in &streams {
        s.abort();
    }
    assert!(all.is_ok(), "only {opened} of {STREAMS} streams started");
}

/// A burst of new connections is spread across the serving threads: each goes to the thread
/// serving the fewest, whichever thread accepted it (`llmux_open_connections` per thread).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_connections_is_spread_across_serving_threads() {
    const BURST: usize = 12;
    let gw = Gateway::start("threads = 2", "").await;
    let addr = gw
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let connects = (0..BURST).map(|_| tokio::net::TcpStream::connect(addr.clone()));
    let held: Vec<_> = futures::future::join_all(connects)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let per_thread = |text: &str| -> Vec<usize> {
        text.lines()
            .filter(|l| l.starts_with("llmux_open_connections{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    // Accepting follows the connects: wait until every one is counted (plus the scrape's own).
    let mut counts = Vec::new();
    for _ in 0..100 {
        counts = per_thread(&gw.get_public_text("/metrics").await);
        if counts.iter().sum::<usize>() > BURST {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(counts.len(), 2, "one gauge per serving thread: {counts:?}");
    assert!(counts.iter().sum::<usize>() > BURST, "{counts:?}");
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 1, "connections per thread: {counts:?}");
    drop(held);
}
