//! Real provider recordings replayed as the upstream: what comes out of llmux must carry the
//! same content, tool calls, reasoning, finish reasons and usage, at the exact cost.

use serde_json::{Value, json};

use crate::harness::*;

pub const JSON: &str = "application/json";

/// Messages with `"content": null` dropped (an assistant turn that only calls tools may carry
/// either; OpenAI treats them alike).
pub fn without_null_content(messages: &Value) -> Value {
    let mut m = messages.clone();
    for msg in m.as_array_mut().unwrap() {
        if msg.get("content").is_some_and(Value::is_null) {
            msg.as_object_mut().unwrap().remove("content");
        }
    }
    m
}
pub const SSE: &str = "text/event-stream";

/// A gateway whose one endpoint for `model` is the replay server, priced per million tokens.
async fn gateway(
    r: &Replay,
    model: &str,
    upstream_model: &str,
    prompt: &str,
    completion: &str,
) -> (Gateway, Key) {
    let rest = format!(
        "{}{}",
        provider("recorded", &format!("{}/v1", r.base), ""),
        endpoint(model, "recorded", upstream_model, prompt, completion, "")
    );
    let gw = Gateway::start("", &rest).await;
    let key = gw.create_key("replay", None);
    (gw, key)
}

/// The client's request: the recorded one, addressed to a catalog model.
pub fn client_request(recorded: &str, model: &str) -> Value {
    let mut body = fixture_json(recorded)["body"].clone();
    body["model"] = model.into();
    body
}

/// Concatenate a field of every delta in a recorded or relayed stream.
pub fn concat_deltas(sse: &str, field: &str) -> String {
    sse_data(sse)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["choices"][0]["delta"][field].as_str().map(str::to_string))
        .collect()
}

pub fn tool_calls_of_stream(sse: &str) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for d in sse_data(sse) {
        let Ok(c) = serde_json::from_str::<Value>(&d) else {
            continue;
        };
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.resize(i + 1, Default::default());
            }
            if let Some(id) = tc["id"].as_str() {
                calls[i].0 = id.to_string();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                calls[i].1 = n.to_string();
            }
            if let Some(a) = tc["function"]["arguments"].as_str() {
                calls[i].2.push_str(a);
            }
        }
    }
    calls
}

pub fn last_usage(sse: &str) -> Value {
    sse_data(sse)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .rfind(|c| c.get("usage").is_some_and(|u| !u.is_null()))
        .map(|c| c["usage"].clone())
        .expect("a usage chunk")
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_nonstream_text() {
    let recorded = fixture("openai/chat-nonstream-text.response.json");
    let up: Value = serde_json::from_slice(&recorded).unwrap();
    let r = replay(vec![(200, JSON, recorded)]).await;
    let (gw, key) = gateway(&r, "openai/gpt-4o", "o3-mini", "1.1", "4.4").await;
    let resp = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &client_request("openai/chat-nonstream-text.request.json", "openai/gpt-4o"),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        up["choices"][0]["message"]["content"]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["native_finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 11);
    assert_eq!(v["usage"]["completion_tokens"], 809);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        768
    );
    assert_eq!(
        dec(&raw_number(&body, "cost")),
        cost(&[(11, "1.1"), (809, "4.4")])
    );
    // What went upstream: the provider's model name, the same messages.
    let sent = r.seen.lock()[0].clone();
    assert_eq!(sent["model"], "o3-mini");
    assert_eq!(
        sent["messages"],
        fixture_json("openai/chat-nonstream-text.request.json")["body"]["messages"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_nonstream_tool_calls_two_turns() {
    let r = replay(vec![
        (
            200,
            JSON,
            fixture("openai/chat-nonstream-tool-calls.1.response.json"),
        ),
        (
            200,
            JSON,
            fixture("openai/chat-nonstream-tool-calls.2.response.json"),
        ),
    ])
    .await;
    let (gw, key) = gateway(&r, "openai/gpt-4o", "gpt-4o", "2.5", "10").await;
    let turn1 = client_request(
        "openai/chat-nonstream-tool-calls.1.request.json",
        "openai/gpt-4o",
    );
    let v: Value = gw
        .post("/api/v1/chat/completions", &key.key, &turn1)
        .await
        .json()
        .await
        .unwrap();
    let up1 = fixture_json("openai/chat-nonstream-tool-calls.1.response.json");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"],
        up1["choices"][0]["message"]["tool_calls"]
    );

    let turn2 = client_request(
        "openai/chat-nonstream-tool-calls.2.request.json",
        "openai/gpt-4o",
    );
    let body = gw
        .post("/api/v1/chat/completions", &key.key, &turn2)
        .await
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let up2 = fixture_json("openai/chat-nonstream-tool-calls.2.response.json");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"],
        up2["choices"][0]["message"]["tool_calls"]
    );
    assert_eq!(
        v["choices"][0]["finish_reason"],
        up2["choices"][0]["finish_reason"]
    );
    let u = &up2["usage"];
    assert_eq!(
        dec(&raw_number(&body, "cost")),
        cost(&[
            (u["prompt_tokens"].as_u64().unwrap(), "2.5"),
            (u["completion_tokens"].as_u64().unwrap(), "10")
        ])
    );
    // The second upstream request carries the first turn's tool call and its result, as recorded.
    let sent = r.seen.lock()[1].clone();
    let recorded = fixture_json("openai/chat-nonstream-tool-calls.2.request.json")["body"].clone();
    assert_eq!(
        without_null_content(&sent["messages"]),
        without_null_content(&recorded["messages"])
    );
    assert_eq!(sent["tools"], recorded["tools"]);
    assert_eq!(sent["tool_choice"], recorded["tool_choice"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_stream_tool_calls_with_usage() {
    let s1 = fixture("openai/chat-stream-tool-calls-include-usage.1.response.sse");
    let s2 = fixture("openai/chat-stream-tool-calls-include-usage.2.response.sse");
    let (rec1, rec2) = (
        String::from_utf8(s1.clone()).unwrap(),
        String::from_utf8(s2.clone()).unwrap(),
    );
    let r = replay(vec![(200, SSE, s1), (200, SSE, s2)]).await;
    let (gw, key) = gateway(&r, "openai/gpt-4o-mini", "gpt-4o-mini", "0.15", "0.6").await;

    let turn1 = client_request(
        "openai/chat-stream-tool-calls-include-usage.1.request.json",
        "openai/gpt-4o-mini",
    );
    let out1 = gw
        .post("/api/v1/chat/completions", &key.key, &turn1)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(tool_calls_of_stream(&out1), tool_calls_of_stream(&rec1));
    assert!(!tool_calls_of_stream(&out1).is_empty());
    let finish = sse_data(&out1)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|c| {
            c["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        });
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let (u_out, u_rec) = (last_usage(&out1), last_usage(&rec1));
    assert_eq!(u_out["prompt_tokens"], u_rec["prompt_tokens"]);
    assert_eq!(u_out["completion_tokens"], u_rec["completion_tokens"]);

    let turn2 = client_request(
        "openai/chat-stream-tool-calls-include-usage.2.request.json",
        "openai/gpt-4o-mini",
    );
    let out2 = gw
        .post("/api/v1/chat/completions", &key.key, &turn2)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        concat_deltas(&out2, "content"),
        concat_deltas(&rec2, "content")
    );
    let (u_out, u_rec) = (last_usage(&out2), last_usage(&rec2));
    let (p, c) = (
        u_rec["prompt_tokens"].as_u64().unwrap(),
        u_rec["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(u_out["prompt_tokens"], p);
    let usage_line = sse_data(&out2).iter().rev().nth(1).unwrap().clone();
    assert_eq!(
        dec(&raw_number(&usage_line, "cost")),
        cost(&[(p, "0.15"), (c, "0.6")])
    );
    let sent = r.seen.lock()[1].clone();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(
        without_null_content(&sent["messages"]),
        without_null_content(
            &fixture_json("openai/chat-stream-tool-calls-include-usage.2.request.json")["body"]["messages"]
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deepseek_reasoning_nonstream() {
    let recorded = fixture("deepseek/chat-nonstream-reasoning.response.json");
    let up: Value = serde_json::from_slice(&recorded).unwrap();
    let r = replay(vec![(200, JSON, recorded)]).await;
    let (gw, key) = gateway(
        &r,
        "deepseek/deepseek-r1",
        "deepseek-reasoner",
        "0.55",
        "2.19",
    )
    .await;
    let body = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &client_request(
                "deepseek/chat-nonstream-reasoning.request.json",
                "deepseek/deepseek-r1",
            ),
        )
        .await
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], up["choices"][0]["message"]["content"]);
    assert_eq!(
        m["reasoning"],
        up["choices"][0]["message"]["reasoning_content"]
    );
    assert_eq!(m["reasoning_details"][0]["type"], "reasoning.text");
    assert_eq!(
        m["reasoning_details"][0]["text"],
        up["choices"][0]["message"]["reasoning_content"]
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        415
    );
    assert_eq!(
        dec(&raw_number(&body, "cost")),
        cost(&[(12, "0.55"), (789, "2.19")])
    );
    let sent = r.seen.lock()[0].clone();
    assert_eq!(sent["model"], "deepseek-reasoner");
    assert_eq!(
        sent["messages"],
        fixture_json("deepseek/chat-nonstream-reasoning.request.json")["body"]["messages"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deepseek_reasoning_stream() {
    let s = fixture("deepseek/chat-stream-reasoning.response.sse");
    let rec = String::from_utf8(s.clone()).unwrap();
    let r = replay(vec![(200, SSE, s)]).await;
    let (gw, key) = gateway(
        &r,
        "deepseek/deepseek-r1",
        "deepseek-reasoner",
        "0.55",
        "2.19",
    )
    .await;
    let out = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &client_request(
                "deepseek/chat-stream-reasoning.request.json",
                "deepseek/deepseek-r1",
            ),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        concat_deltas(&out, "reasoning"),
        concat_deltas(&rec, "reasoning_content")
    );
    assert!(concat_deltas(&out, "reasoning").len() > 100);
    assert_eq!(
        concat_deltas(&out, "content"),
        concat_deltas(&rec, "content")
    );
    let u = last_usage(&out);
    assert_eq!(u["prompt_tokens"], 6);
    assert_eq!(u["completion_tokens"], 212);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 198);
    let usage_line = sse_data(&out).iter().rev().nth(1).unwrap().clone();
    assert_eq!(
        dec(&raw_number(&usage_line, "cost")),
        cost(&[(6, "0.55"), (212, "2.19")])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_upstream_400_is_passed_on() {
    let r = replay(vec![(
        400,
        JSON,
        fixture("openai/chat-error-400-unsupported-value.response.json"),
    )])
    .await;
    let (gw, key) = gateway(&r, "openai/o3-mini", "o1-mini", "1", "1").await;
    let resp = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &client_request(
                "openai/chat-error-400-unsupported-value.request.json",
                "openai/o3-mini",
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    let upstream = fixture_json("openai/chat-error-400-unsupported-value.response.json");
    assert_eq!(v["error"]["metadata"]["raw"], upstream["error"]["message"]);
    let _ = json!(null);
}
