//! Every error case of the chat API: its HTTP status and its OpenRouter-shaped body.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

struct Setup {
    gw: Gateway,
    key: Key,
    _sim: llmux_sim::SimHandle,
}

async fn setup() -> Setup {
    let sim = sim().await;
    let base = format!("{}/v1", sim.base_url());
    let mut rest = provider("simco", &base, "");
    rest += &provider("slowco", &base, "timeout_secs = 1");
    rest += &endpoint("deepseek/deepseek-v3.2", "simco", "ok", "0.28", "0.42", "");
    rest += &endpoint("openai/gpt-4o", "simco", "m+fail=503", "1", "1", "");
    rest += &endpoint(
        "openai/gpt-4o-mini",
        "simco",
        "m+fail=429+retry_after=7",
        "1",
        "1",
        "",
    );
    rest += &endpoint("openai/gpt-4.1-mini", "simco", "m+fail=400", "1", "1", "");
    rest += &endpoint("openai/gpt-4.1", "slowco", "m+ttft=4000", "1", "1", "");
    rest += &endpoint("qwen/qwen3-max", "simco", "m+malformed=2", "1", "1", "");
    rest += &endpoint("z-ai/glm-5", "simco", "m+disconnect=3", "1", "1", "");
    let gw = Gateway::start("max_body_bytes = 4096\nstream_keepalive_ms = 10000", &rest).await;
    let key = gw.create_key("errors", None);
    Setup { gw, key, _sim: sim }
}

async fn chat_raw(s: &Setup, body: &str) -> reqwest::Response {
    s.gw.http
        .post(s.gw.url("/api/v1/chat/completions"))
        .bearer_auth(&s.key.key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn msg(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_invalid_requests_are_400() {
    let s = setup().await;
    let v = expect_error(chat_raw(&s, "{not json").await, 400).await;
    assert!(
        msg(&v).contains("key must be a string") || msg(&v).contains("expected"),
        "{v}"
    );
    let v = expect_error(
        chat_raw(&s, r#"{"messages":[{"role":"user","content":"hi"}]}"#).await,
        400,
    )
    .await;
    assert!(msg(&v).contains("model"), "{v}");
    // Something after the document, and nesting deeper than 128 levels (1,000 here, within
    // this gateway's 4 KB bodies): an error, not a stack overflow on the serving thread, which
    // parsing the first 128 levels took in an unoptimized build before those threads were
    // given `PARSING_STACK_BYTES`.
    let ok = r#"{"model":"deepseek/deepseek-v3.2","messages":[{"role":"user","content":"hi"}]}"#;
    let v = expect_error(chat_raw(&s, &format!("{ok} x")).await, 400).await;
    assert!(msg(&v).contains("trailing characters"), "{v}");
    let deep = format!(
        r#"{{"model":"deepseek/deepseek-v3.2","messages":[{{"role":"user","content":"hi","x":{}{}}}]}}"#,
        "[".repeat(1_000),
        "]".repeat(1_000)
    );
    let v = expect_error(chat_raw(&s, &deep).await, 400).await;
    assert!(msg(&v).contains("recursion limit"), "{v}");
    let v = expect_error(
        chat_raw(
            &s,
            r#"{"model":"nobody/nothing","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await,
        400,
    )
    .await;
    assert_eq!(msg(&v), "nobody/nothing is not a valid model ID");
    let v = expect_error(
        chat_raw(&s, r#"{"model":"deepseek/deepseek-v3.2","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#).await,
        400,
    )
    .await;
    assert!(msg(&v).starts_with("temperature:"), "{v}");
    let v = expect_error(
        chat_raw(&s, r#"{"model":"deepseek/deepseek-v3.2","messages":"hi"}"#).await,
        400,
    )
    .await;
    assert!(msg(&v).starts_with("messages:"), "{v}");
    let v = expect_error(
        chat_raw(
            &s,
            r#"{"model":"deepseek/deepseek-v3.2","messages":[{"role":"wizard","content":"hi"}]}"#,
        )
        .await,
        400,
    )
    .await;
    assert!(msg(&v).contains("messages[0].role"), "{v}");
    // A request the upstream itself refuses as invalid is not retried elsewhere: 400.
    let v = expect_error(
        s.gw.post(
            "/api/v1/chat/completions",
            &s.key.key,
            &json!({"model": "openai/gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
        400,
    )
    .await;
    assert!(msg(&v).contains("simulated error 400"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_errors_are_401() {
    let s = setup().await;
    let body =
        json!({"model": "deepseek/deepseek-v3.2", "messages": [{"role": "user", "content": "hi"}]});
    let r =
        s.gw.http
            .post(s.gw.url("/api/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
    let v = expect_error(r, 401).await;
    assert_eq!(msg(&v), "No auth credentials found");
    let v = expect_error(
        s.gw.post("/api/v1/chat/completions", "sk-llmux-v1-nope", &body)
            .await,
        401,
    )
    .await;
    assert_eq!(msg(&v), "Invalid API key");
    // The Anthropic SDK's header works too.
    let ok =
        s.gw.http
            .post(s.gw.url("/api/v1/chat/completions"))
            .header("x-api-key", &s.key.key)
            .json(&body)
            .send()
            .await
            .unwrap();
    assert_eq!(ok.status(), 200);

    // Disabled from the CLI while the server runs: refused within a second.
    let out = s.gw.cli(&["keys", "disable", &s.key.hash]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = std::time::Instant::now();
    loop {
        let r =
            s.gw.post("/api/v1/chat/completions", &s.key.key, &body)
                .await;
        if r.status() == 401 {
            let v = expect_error(r, 401).await;
            assert_eq!(msg(&v), "This API key is disabled");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a disabled key kept working for over a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_is_413() {
    let s = setup().await;
    let big = "x".repeat(5000);
    let body =
        json!({"model": "deepseek/deepseek-v3.2", "messages": [{"role": "user", "content": big}]});
    let v = expect_error(
        s.gw.post("/api/v1/chat/completions", &s.key.key, &body)
            .await,
        413,
    )
    .await;
    assert!(msg(&v).contains("4096"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_map_to_502_429_408() {
    let s = setup().await;
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});

    for stream in [false, true] {
        let v = expect_error(
            s.gw.post(
                "/api/v1/chat/completions",
                &s.key.key,
                &chat("openai/gpt-4o", stream),
            )
            .await,
            502,
        )
        .await;
        assert_eq!(v["error"]["metadata"]["provider_name"], "simco provider");
        assert_eq!(v["error"]["metadata"]["raw"], "simulated error 503");
        assert!(msg(&v).contains("simco provider"), "{v}");
    }

    let r =
        s.gw.post(
            "/api/v1/chat/completions",
            &s.key.key,
            &chat("openai/gpt-4o-mini", false),
        )
        .await;
    assert_eq!(r.headers()["retry-after"], "7");
    let v = expect_error(r, 429).await;
    assert_eq!(v["error"]["metadata"]["error_type"], "rate_limit_exceeded");

    let started = std::time::Instant::now();
    let v = expect_error(
        s.gw.post(
            "/api/v1/chat/completions",
            &s.key.key,
            &chat("openai/gpt-4.1", false),
        )
        .await,
        408,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timed out at the provider's 1s timeout"
    );
    assert_eq!(v["error"]["metadata"]["error_type"], "timeout");
    let v = expect_error(
        s.gw.post(
            "/api/v1/chat/completions",
            &s.key.key,
            &chat("openai/gpt-4.1", true),
        )
        .await,
        408,
    )
    .await;
    assert!(msg(&v).contains("timed out"), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_streams_end_with_an_error_chunk() {
    let s = setup().await;
    for model in ["qwen/qwen3-max", "z-ai/glm-5"] {
        let r = s
            .gw
            .post(
                "/api/v1/chat/completions",
                &s.key.key,
                &json!({"model": model, "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(
            r.status(),
            200,
            "{model}: content was already sent, so the status stays 200"
        );
        let body = r.text().await.unwrap();
        let data = sse_data(&body);
        assert_eq!(data.last().unwrap(), "[DONE]", "{model}: {body}");
        let err: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        assert_eq!(err["object"], "chat.completion.chunk");
        assert_eq!(err["error"]["code"], 502, "{model}: {err}");
        assert_eq!(err["choices"][0]["finish_reason"], "error");
        let text: String = data
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert!(
            text.starts_with("Simulated answer:"),
            "{model}: the tokens before the failure arrived: {text:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unroutable_and_unknown_paths_are_404() {
    let s = setup().await;
    let v = expect_error(
        s.gw.post(
            "/api/v1/chat/completions",
            &s.key.key,
            &json!({"model": "mistralai/mistral-large", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
        404,
    )
    .await;
    assert!(msg(&v).contains("No endpoints found"), "{v}");
    let v = expect_error(s.gw.get("/api/v1/nothing-here", &s.key.key).await, 404).await;
    assert!(msg(&v).contains("/api/v1/nothing-here"));
    let v = expect_error(
        s.gw.get("/api/v1/generation?id=gen-missing", &s.key.key)
            .await,
        404,
    )
    .await;
    assert!(msg(&v).contains("gen-missing"));
    expect_error(s.gw.get("/api/v1/generation", &s.key.key).await, 400).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_recorded_too() {
    let s = setup().await;
    let r =
        s.gw.post(
            "/api/v1/chat/completions",
            &s.key.key,
            &json!({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let id = generation_id(&r);
    let g: Value =
        s.gw.get(&format!("/api/v1/generation?id={id}"), &s.key.key)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(g["data"]["status"], 502);
    assert_eq!(g["data"]["total_cost"], 0.0);
    let attempts = g["data"]["provider_responses"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], 503);
}
