//! Every protocol both ways: Anthropic, Gemini and OpenRouter recordings replayed as the
//! upstream, read through `/chat/completions` (OpenAI format) and `/messages` (Anthropic
//! format). Multi-turn recordings check that the second upstream request carries what the
//! provider requires from the first turn (signed thinking, thought signatures).

use serde_json::{Value, json};

use crate::fixtures::{JSON, SSE, concat_deltas, last_usage, tool_calls_of_stream};
use crate::harness::*;

/// A gateway whose one endpoint for `model` is the replay server speaking `api`.
async fn gateway(
    r: &Replay,
    api: &str,
    model: &str,
    upstream: &str,
    prompt: &str,
    completion: &str,
) -> (Gateway, Key) {
    let base = match api {
        "gemini" => format!("{}/v1beta", r.base),
        _ => format!("{}/v1", r.base),
    };
    let mut extra = String::new();
    if api == "openai" {
        extra.push_str("dialect = \"openrouter\"\napi_key_env = \"LLMUX_TEST_UPSTREAM_KEY\"");
    } else {
        extra.push_str("api_key_env = \"LLMUX_TEST_UPSTREAM_KEY\"");
    }
    let rest = format!(
        "{}{}",
        provider_api("recorded", api, &base, &extra),
        endpoint(
            model,
            "recorded",
            upstream,
            prompt,
            completion,
            "max_completion_tokens = 4096"
        )
    );
    let gw =
        Gateway::start_with_env("", &rest, &[("LLMUX_TEST_UPSTREAM_KEY", "upstream-secret")]).await;
    let key = gw.create_key("replay", None);
    (gw, key)
}

fn body_of(recorded: &str) -> Value {
    fixture_json(recorded)["body"].clone()
}

/// The recorded Anthropic request, addressed to a catalog model.
fn anthropic_request(recorded: &str, model: &str) -> Value {
    let mut b = body_of(recorded);
    b["model"] = model.into();
    b
}

/// Tool results as arrays of blocks and without `is_error: false`, the form llmux sends;
/// both mean the same to Anthropic.
fn normalize_anthropic_messages(m: &Value) -> Value {
    let mut m = m.clone();
    for msg in m.as_array_mut().unwrap() {
        if let Some(blocks) = msg["content"].as_array_mut() {
            for b in blocks {
                if b["type"] == "tool_result" {
                    if let Some(s) = b["content"].as_str() {
                        b["content"] = json!([{"type": "text", "text": s}]);
                    }
                    if b.get("is_error") == Some(&json!(false)) {
                        b.as_object_mut().unwrap().remove("is_error");
                    }
                }
            }
        } else if let Some(s) = msg["content"].as_str() {
            msg["content"] = json!([{"type": "text", "text": s}]);
        }
    }
    m
}

fn anthropic_events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter_map(|ev| {
            let mut name = None;
            let mut data = None;
            for l in ev.lines() {
                if let Some(n) = l.strip_prefix("event: ") {
                    name = Some(n.to_string());
                }
                if let Some(d) = l.strip_prefix("data: ") {
                    data = serde_json::from_str::<Value>(d).ok();
                }
            }
            Some((name?, data?))
        })
        .collect()
}

/// Fold an Anthropic event stream the way the Anthropic SDK does: the final content blocks.
fn fold_anthropic(events: &[(String, Value)]) -> (Vec<Value>, Value, Value) {
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    let mut stop = Value::Null;
    let mut usage = json!({});
    for (name, d) in events {
        match name.as_str() {
            "message_start" => usage = d["message"]["usage"].clone(),
            "content_block_start" => {
                blocks.push(d["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = d["index"].as_u64().unwrap() as usize;
                let delta = &d["delta"];
                let b = &mut blocks[i];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        b["text"] = format!(
                            "{}{}",
                            b["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        )
                        .into()
                    }
                    "thinking_delta" => {
                        b["thinking"] = format!(
                            "{}{}",
                            b["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        )
                        .into()
                    }
                    "signature_delta" => b["signature"] = delta["signature"].clone(),
                    "input_json_delta" => {
                        partial[i].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = d["index"].as_u64().unwrap() as usize;
                if !partial[i].is_empty() {
                    blocks[i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                }
            }
            "message_delta" => {
                stop = d["delta"]["stop_reason"].clone();
                for (k, v) in d["usage"].as_object().unwrap() {
                    usage[k] = v.clone();
                }
            }
            _ => {}
        }
    }
    (blocks, stop, usage)
}

fn assert_well_formed_anthropic_stream(events: &[(String, Value)]) {
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "message_stop");
    let mut open: Option<u64> = None;
    for (name, d) in events {
        match name.as_str() {
            "content_block_start" => {
                assert!(
                    open.is_none(),
                    "a block opened before the previous one closed"
                );
                open = d["index"].as_u64();
            }
            "content_block_delta" => assert_eq!(open, d["index"].as_u64()),
            "content_block_stop" => {
                assert_eq!(open, d["index"].as_u64());
                open = None;
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- Anthropic upstream

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_text_through_both_client_formats() {
    let rec = fixture("anthropic/messages-nonstream-text.response.json");
    let up: Value = serde_json::from_slice(&rec).unwrap();
    let r = replay(vec![
        (200, JSON, rec.clone()),
        (200, JSON, rec.clone()),
        (200, JSON, rec),
    ])
    .await;
    let (gw, key) = gateway(
        &r,
        "anthropic",
        "anthropic/claude-opus-4",
        "claude-3-opus-latest",
        "15",
        "75",
    )
    .await;

    // OpenAI format in, Anthropic upstream.
    let body = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "anthropic/claude-opus-4", "max_tokens": 4096, "messages": [
                {"role": "system", "content": "You are a helpful assistant.\n\n"},
                {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        up["content"][0]["text"]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["native_finish_reason"], "end_turn");
    assert_eq!(v["usage"]["prompt_tokens"], 20);
    assert_eq!(v["usage"]["completion_tokens"], 10);
    assert_eq!(
        dec(&raw_number(&body, "cost")),
        cost(&[(20, "15"), (10, "75")])
    );
    let sent = r.seen.lock()[0].clone();
    let recorded = body_of("anthropic/messages-nonstream-text.request.json");
    assert_eq!(sent["model"], "claude-3-opus-latest");
    assert_eq!(sent["system"][0]["text"], recorded["system"]);
    assert_eq!(sent["messages"], recorded["messages"]);
    assert_eq!(sent["max_tokens"], 4096);
    let (path, headers) = r.heads.lock()[0].clone();
    assert_eq!(path, "/v1/messages");
    assert_eq!(headers["x-api-key"], "upstream-secret");
    assert_eq!(headers["anthropic-version"], "2023-06-01");

    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("llmux/")
    );
    assert!(!headers.contains_key("anthropic-beta"));

    // Anthropic format in, Anthropic upstream: the answer comes back as a Message. The
    // client's beta features go upstream with that request only.
    let messages_request = anthropic_request(
        "anthropic/messages-nonstream-text.request.json",
        "anthropic/claude-opus-4",
    );
    let resp = gw
        .http
        .post(gw.url("/api/v1/messages"))
        .bearer_auth(&key.key)
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .json(&messages_request)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let m: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["content"], up["content"]);
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["input_tokens"], 20);
    assert_eq!(m["usage"]["output_tokens"], 10);
    assert_eq!(r.seen.lock()[1]["messages"], recorded["messages"]);
    let resp = gw
        .post("/api/v1/messages", &key.key, &messages_request)
        .await;
    assert_eq!(resp.status(), 200);
    let heads = r.heads.lock().clone();
    assert_eq!(
        heads[1].1["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    for (_, headers) in &heads[1..] {
        assert_eq!(headers["x-api-key"], "upstream-secret");
        assert_eq!(headers.get_all("x-api-key").iter().count(), 1);
    }
    assert!(!heads[2].1.contains_key("anthropic-beta"));
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_thinking_tool_use_round_trips_the_signature_from_openai_clients() {
    let r = replay(vec![
        (
            200,
            JSON,
            fixture("anthropic/messages-nonstream-thinking-tool-use.1.response.json"),
        ),
        (
            200,
            JSON,
            fixture("anthropic/messages-nonstream-thinking-tool-use.2.response.json"),
        ),
    ])
    .await;
    let (gw, key) = gateway(
        &r,
        "anthropic",
        "anthropic/claude-sonnet-4",
        "claude-sonnet-4-0",
        "3",
        "15",
    )
    .await;
    let up1 = fixture_json("anthropic/messages-nonstream-thinking-tool-use.1.response.json");
    let tools = json!([{"type": "function", "function": {"name": "get_user_country", "description": "",
        "parameters": {"additionalProperties": false, "properties": {}, "type": "object"}}}]);
    let mut messages =
        vec![json!({"role": "user", "content": "What is the largest city in the user country?"})];
    let turn1 = json!({"model": "anthropic/claude-sonnet-4", "max_tokens": 4096, "reasoning": {"max_tokens": 3000},
                       "tools": tools, "tool_choice": "auto", "messages": messages});
    let v: Value = gw
        .post("/api/v1/chat/completions", &key.key, &turn1)
        .await
        .json()
        .await
        .unwrap();
    let msg = v["choices"][0]["message"].clone();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], up1["content"][1]["text"]);
    assert_eq!(msg["reasoning"], up1["content"][0]["thinking"]);
    assert_eq!(
        msg["reasoning_details"][0]["signature"],
        up1["content"][0]["signature"]
    );
    assert_eq!(msg["reasoning_details"][0]["format"], "anthropic-claude-v1");
    assert_eq!(msg["tool_calls"][0]["id"], up1["content"][2]["id"]);
    assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_user_country");
    assert_eq!(msg["tool_calls"][0]["function"]["arguments"], "{}");
    let sent1 = r.seen.lock()[0].clone();
    assert_eq!(
        sent1["thinking"],
        json!({"type": "enabled", "budget_tokens": 3000})
    );

    // The client sends the assistant message back as it got it, with the tool's result.
    messages.push(msg.clone());
    messages.push(
        json!({"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "Mexico"}),
    );
    let turn2 = json!({"model": "anthropic/claude-sonnet-4", "max_tokens": 4096, "reasoning": {"max_tokens": 3000},
                       "tools": tools, "tool_choice": "auto", "messages": messages});
    let v: Value = gw
        .post("/api/v1/chat/completions", &key.key, &turn2)
        .await
        .json()
        .await
        .unwrap();
    let up2 = fixture_json("anthropic/messages-nonstream-thinking-tool-use.2.response.json");
    let text: String = up2["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect();
    assert_eq!(v["choices"][0]["message"]["content"], text);
    // What Anthropic requires: the signed thinking block first in the assistant turn, unchanged.
    let sent2 = r.seen.lock()[1].clone();
    let recorded2 = body_of("anthropic/messages-nonstream-thinking-tool-use.2.request.json");
    assert_eq!(
        normalize_anthropic_messages(&sent2["messages"]),
        normalize_anthropic_messages(&recorded2["messages"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_clients_round_trip_thinking_and_parallel_tools_unchanged() {
    for name in [
        "messages-nonstream-thinking-tool-use",
        "messages-nonstream-parallel-tool-use",
    ] {
        let r = replay(vec![
            (
                200,
                JSON,
                fixture(&format!("anthropic/{name}.1.response.json")),
            ),
            (
                200,
                JSON,
                fixture(&format!("anthropic/{name}.2.response.json")),
            ),
        ])
        .await;
        let (gw, key) = gateway(
            &r,
            "anthropic",
            "anthropic/claude-sonnet-4",
            "claude-x",
            "3",
            "15",
        )
        .await;
        let up1 = fixture_json(&format!("anthropic/{name}.1.response.json"));
        let m: Value = gw
            .post(
                "/v1/messages",
                &key.key,
                &anthropic_request(
                    &format!("anthropic/{name}.1.request.json"),
                    "anthropic/claude-sonnet-4",
                ),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(m["content"], up1["content"], "{name}");
        assert_eq!(m["stop_reason"], "tool_use");
        let turn2 = anthropic_request(
            &format!("anthropic/{name}.2.request.json"),
            "anthropic/claude-sonnet-4",
        );
        let m2: Value = gw
            .post("/v1/messages", &key.key, &turn2)
            .await
            .json()
            .await
            .unwrap();
        let up2 = fixture_json(&format!("anthropic/{name}.2.response.json"));
        assert_eq!(m2["content"], up2["content"], "{name}");
        let sent = r.seen.lock()[1].clone();
        assert_eq!(
            normalize_anthropic_messages(&sent["messages"]),
            normalize_anthropic_messages(&turn2["messages"]),
            "{name}: the second request reaches Anthropic as the client wrote it"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_thinking_stream_in_both_formats() {
    let rec = fixture("anthropic/messages-stream-thinking.response.sse");
    let rec_events = anthropic_events(&String::from_utf8(rec.clone()).unwrap());
    let (rec_blocks, _, _) = fold_anthropic(&rec_events);
    let r = replay(vec![(200, SSE, rec.clone()), (200, SSE, rec)]).await;
    let (gw, key) = gateway(
        &r,
        "anthropic",
        "anthropic/claude-sonnet-4",
        "claude-sonnet-4-0",
        "3",
        "15",
    )
    .await;
    let req = anthropic_request(
        "anthropic/messages-stream-thinking.request.json",
        "anthropic/claude-sonnet-4",
    );

    let out = gw
        .post("/api/v1/messages", &key.key, &req)
        .await
        .text()
        .await
        .unwrap();
    let events = anthropic_events(&out);
    assert_well_formed_anthropic_stream(&events);
    let (blocks, stop, usage) = fold_anthropic(&events);
    assert_eq!(
        blocks, rec_blocks,
        "same thinking (with signature) and text"
    );
    assert_eq!(stop, "end_turn");
    assert_eq!(usage["output_tokens"], 282);
    assert_eq!(usage["input_tokens"], 43);

    // The same recording through the OpenAI format.
    let mut oreq = json!({"model": "anthropic/claude-sonnet-4", "stream": true, "max_tokens": req["max_tokens"],
                          "reasoning": {"max_tokens": req["thinking"]["budget_tokens"]}, "messages": []});
    for m in req["messages"].as_array().unwrap() {
        oreq["messages"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": m["role"], "content": m["content"]}));
    }
    let out = gw
        .post("/api/v1/chat/completions", &key.key, &oreq)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        concat_deltas(&out, "reasoning"),
        rec_blocks[0]["thinking"].as_str().unwrap()
    );
    assert_eq!(
        concat_deltas(&out, "content"),
        rec_blocks[1]["text"].as_str().unwrap()
    );
    let signature: Vec<String> = sse_data(&out)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["reasoning_details"][0]["signature"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        signature,
        vec![rec_blocks[0]["signature"].as_str().unwrap().to_string()]
    );
    let u = last_usage(&out);
    assert_eq!(
        (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()),
        (Some(43), Some(282))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_server_tools_pass_through_to_anthropic_clients() {
    let s1 = fixture("anthropic/messages-stream-tool-use-input-json-delta.1.response.sse");
    let s2 = fixture("anthropic/messages-stream-tool-use-input-json-delta.2.response.sse");
    let (rec1, rec2) = (
        fold_anthropic(&anthropic_events(&String::from_utf8(s1.clone()).unwrap())),
        fold_anthropic(&anthropic_events(&String::from_utf8(s2.clone()).unwrap())),
    );
    let r = replay(vec![(200, SSE, s1.clone()), (200, SSE, s2), (200, SSE, s1)]).await;
    let (gw, key) = gateway(
        &r,
        "anthropic",
        "anthropic/claude-sonnet-4.6",
        "claude-sonnet-4-6",
        "3",
        "15",
    )
    .await;
    let req1 = anthropic_request(
        "anthropic/messages-stream-tool-use-input-json-delta.1.request.json",
        "anthropic/claude-sonnet-4.6",
    );
    let out = gw
        .post("/api/v1/messages", &key.key, &req1)
        .await
        .text()
        .await
        .unwrap();
    let events = anthropic_events(&out);
    assert_well_formed_anthropic_stream(&events);
    let (blocks, stop, _) = fold_anthropic(&events);
    assert_eq!(
        blocks, rec1.0,
        "text, server tool use and its result, and the tool use, in order"
    );
    assert_eq!(stop, "tool_use");
    let sent1 = r.seen.lock()[0].clone();
    assert_eq!(
        sent1["tools"], req1["tools"],
        "server tools and defer_loading reach Anthropic unchanged"
    );

    let req2 = anthropic_request(
        "anthropic/messages-stream-tool-use-input-json-delta.2.request.json",
        "anthropic/claude-sonnet-4.6",
    );
    let out2 = gw
        .post("/api/v1/messages", &key.key, &req2)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(fold_anthropic(&anthropic_events(&out2)).0, rec2.0);
    let sent2 = r.seen.lock()[1].clone();
    assert_eq!(
        normalize_anthropic_messages(&sent2["messages"]),
        normalize_anthropic_messages(&req2["messages"])
    );

    // Through the OpenAI format, the client's own tool call comes out; the server-side tool
    // blocks have no OpenAI form and are left out.
    let oreq = json!({"model": "anthropic/claude-sonnet-4.6", "stream": true, "max_tokens": 4096,
        "messages": [{"role": "user", "content": "What is the current USD to EUR exchange rate?"}],
        "tools": [{"type": "function", "function": {"name": "get_exchange_rate", "parameters": {"type": "object"}}}]});
    let out = gw
        .post("/api/v1/chat/completions", &key.key, &oreq)
        .await
        .text()
        .await
        .unwrap();
    let calls = tool_calls_of_stream(&out);
    let rec_tool = rec1.0.iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, rec_tool["id"].as_str().unwrap());
    assert_eq!(calls[0].1, "get_exchange_rate");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        rec_tool["input"]
    );
    let text: String = rec1.0.iter().filter_map(|b| b["text"].as_str()).collect();
    assert_eq!(concat_deltas(&out, "content"), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_errors_keep_their_status_in_each_format() {
    let rec = fixture("anthropic/messages-error-400.response.json");
    let r = replay(vec![(400, JSON, rec.clone()), (400, JSON, rec)]).await;
    let (gw, key) = gateway(
        &r,
        "anthropic",
        "anthropic/claude-sonnet-4",
        "claude-x",
        "3",
        "15",
    )
    .await;
    let upstream_msg =
        fixture_json("anthropic/messages-error-400.response.json")["error"]["message"].clone();
    let resp = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "anthropic/claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["metadata"]["raw"], upstream_msg);
    let resp = gw
        .post(
            "/api/v1/messages",
            &key.key,
            &json!({"model": "anthropic/claude-sonnet-4", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(upstream_msg.as_str().unwrap())
    );
}

// ---------------------------------------------------------------- Gemini upstream

#[tokio::test(flavor = "multi_thread")]
async fn gemini_text_whole_and_streamed() {
    let whole = fixture("google/generatecontent-nonstream-text.response.json");
    let up: Value = serde_json::from_slice(&whole).unwrap();
    let stream = fixture("google/streamgeneratecontent-sse-text.response.sse");
    let rec_stream = String::from_utf8(stream.clone()).unwrap();
    let r = replay(vec![
        (200, JSON, whole.clone()),
        (200, SSE, stream),
        (200, JSON, whole),
    ])
    .await;
    let (gw, key) = gateway(
        &r,
        "gemini",
        "google/gemini-2.5-flash",
        "gemini-2.5-flash",
        "0.3",
        "2.5",
    )
    .await;
    let req = json!({"model": "google/gemini-2.5-flash", "messages": [
        {"role": "system", "content": "You are a chatbot."}, {"role": "user", "content": "Hello!"}]});
    let body = gw
        .post("/api/v1/chat/completions", &key.key, &req)
        .await
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        up["candidates"][0]["content"]["parts"][0]["text"]
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["native_finish_reason"], "STOP");
    assert_eq!(v["usage"]["prompt_tokens"], 9);
    assert_eq!(v["usage"]["completion_tokens"], 9 + 34);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        34
    );
    assert_eq!(
        dec(&raw_number(&body, "cost")),
        cost(&[(9, "0.3"), (43, "2.5")])
    );
    let sent = r.seen.lock()[0].clone();
    let recorded = body_of("google/generatecontent-nonstream-text.request.json");
    assert_eq!(sent["contents"], recorded["contents"]);
    assert_eq!(
        sent["systemInstruction"]["parts"],
        recorded["systemInstruction"]["parts"]
    );
    let (path, headers) = r.heads.lock()[0].clone();
    assert_eq!(path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(headers["x-goog-api-key"], "upstream-secret");

    let mut sreq = req.clone();
    sreq["stream"] = true.into();
    let out = gw
        .post("/api/v1/chat/completions", &key.key, &sreq)
        .await
        .text()
        .await
        .unwrap();
    let expected: String = sse_data(&rec_stream)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(concat_deltas(&out, "content"), expected);
    assert_eq!(
        r.heads.lock()[1].0,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );

    // Anthropic clients reach Gemini too.
    let m: Value = gw
        .post(
            "/api/v1/messages",
            &key.key,
            &json!({"model": "google/gemini-2.5-flash", "max_tokens": 100, "system": "You are a chatbot.",
                    "messages": [{"role": "user", "content": "Hello!"}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["content"][0]["text"],
        up["candidates"][0]["content"]["parts"][0]["text"]
    );
    assert_eq!(m["stop_reason"], "end_turn");
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_thinking_stream() {
    let s = fixture("google/streamgeneratecontent-sse-thinking.response.sse");
    let rec = String::from_utf8(s.clone()).unwrap();
    let r = replay(vec![(200, SSE, s)]).await;
    let (gw, key) = gateway(
        &r,
        "gemini",
        "google/gemini-2.5-pro",
        "gemini-2.5-pro",
        "1.25",
        "10",
    )
    .await;
    let out = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "google/gemini-2.5-pro", "stream": true, "reasoning": {"enabled": true},
                    "messages": [{"role": "user", "content": "How do I cross the street?"}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    let parts: Vec<Value> = sse_data(&rec)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .flat_map(|c| {
            c["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let thoughts: String = parts
        .iter()
        .filter(|p| p["thought"] == true)
        .filter_map(|p| p["text"].as_str())
        .collect();
    let text: String = parts
        .iter()
        .filter(|p| p["thought"] != true)
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(concat_deltas(&out, "reasoning"), thoughts);
    assert_eq!(concat_deltas(&out, "content"), text);
    let sent = r.seen.lock()[0].clone();
    assert_eq!(
        sent["generationConfig"]["thinkingConfig"]["includeThoughts"],
        true
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_thought_signature_round_trips_through_both_formats() {
    let name = "streamgeneratecontent-sse-tool-call-thought-signature";
    let s1 = fixture(&format!("google/{name}.1.response.sse"));
    let s2 = fixture(&format!("google/{name}.2.response.sse"));
    let rec1 = String::from_utf8(s1.clone()).unwrap();
    let signature = sse_data(&rec1)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|c| {
            c["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap();
    let r = replay(vec![
        (200, SSE, s1.clone()),
        (200, SSE, s2.clone()),
        (200, SSE, s1),
        (200, SSE, s2),
    ])
    .await;
    let (gw, key) = gateway(
        &r,
        "gemini",
        "google/gemini-3.1-pro-preview",
        "gemini-3-pro-preview",
        "2",
        "12",
    )
    .await;
    let tools = json!([{"type": "function", "function": {"name": "get_country", "description": "",
        "parameters": {"additionalProperties": false, "properties": {}, "type": "object"}}}]);
    let user = json!({"role": "user", "content": "What is the capital of the user country? Call the tool"});

    // OpenAI format: the signature travels in reasoning_details, tied to the tool call.
    let out = gw
        .post("/api/v1/chat/completions", &key.key, &json!({"model": "google/gemini-3.1-pro-preview", "stream": true, "tools": tools, "messages": [user]}))
        .await
        .text()
        .await
        .unwrap();
    let calls = tool_calls_of_stream(&out);
    assert_eq!(calls[0].1, "get_country");
    assert_eq!(calls[0].2, "{}");
    let detail = sse_data(&out)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|c| {
            c["choices"][0]["delta"]["reasoning_details"]
                .get(0)
                .cloned()
        })
        .unwrap();
    assert_eq!(detail["type"], "reasoning.encrypted");
    assert_eq!(detail["data"], signature.as_str());
    assert_eq!(detail["id"], calls[0].0.as_str());
    assert_eq!(detail["format"], "google-gemini-v1");
    let finish = sse_data(&out)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|c| {
            c["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        });
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    let assistant = json!({"role": "assistant", "content": null, "reasoning_details": [detail],
        "tool_calls": [{"id": calls[0].0, "type": "function", "function": {"name": "get_country", "arguments": "{}"}}]});
    let tool = json!({"role": "tool", "tool_call_id": calls[0].0, "content": "Mexico"});
    let out2 = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "google/gemini-3.1-pro-preview", "stream": true, "tools": tools, "messages": [user, assistant, tool]}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        concat_deltas(&out2, "content"),
        "The capital of Mexico is Mexico City."
    );
    let sent = r.seen.lock()[1].clone();
    let model_turn = &sent["contents"][1];
    assert_eq!(model_turn["role"], "model");
    assert_eq!(
        model_turn["parts"][0]["functionCall"]["name"],
        "get_country"
    );
    assert_eq!(
        model_turn["parts"][0]["thoughtSignature"],
        signature.as_str(),
        "Gemini gets its signature back"
    );
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_country"
    );

    // Anthropic format: the signature rides in a redacted_thinking block and comes back intact.
    let anthropic_tools = json!([{"name": "get_country", "description": "", "input_schema": {"type": "object", "properties": {}}}]);
    let out = gw
        .post(
            "/api/v1/messages",
            &key.key,
            &json!({"model": "google/gemini-3.1-pro-preview", "max_tokens": 1000, "stream": true, "tools": anthropic_tools,
                    "messages": [{"role": "user", "content": user["content"]}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    let events = anthropic_events(&out);
    assert_well_formed_anthropic_stream(&events);
    let (content, stop, _) = fold_anthropic(&events);
    assert_eq!(stop, "tool_use");
    let tool_use = content
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    assert!(
        content.iter().any(|b| b["type"] == "redacted_thinking"),
        "{content:?}"
    );
    let out2 = gw
        .post(
            "/api/v1/messages",
            &key.key,
            &json!({"model": "google/gemini-3.1-pro-preview", "max_tokens": 1000, "stream": true, "tools": anthropic_tools,
                    "messages": [{"role": "user", "content": user["content"]},
                                 {"role": "assistant", "content": content},
                                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "Mexico"}]}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    let (content2, _, _) = fold_anthropic(&anthropic_events(&out2));
    assert_eq!(content2[0]["text"], "The capital of Mexico is Mexico City.");
    let sent = r.seen.lock()[3].clone();
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"],
        signature.as_str()
    );
}

// ---------------------------------------------------------------- OpenRouter as upstream

#[tokio::test(flavor = "multi_thread")]
async fn openrouter_upstream_recordings() {
    let usage1 = fixture("openrouter/chat-nonstream-usage.1.response.json");
    let up1: Value = serde_json::from_slice(&usage1).unwrap();
    let tools = fixture("openrouter/chat-nonstream-tool-calling.response.json");
    let up_tools: Value = serde_json::from_slice(&tools).unwrap();
    let reasoning = fixture("openrouter/chat-stream-reasoning.response.sse");
    let rec_reasoning = String::from_utf8(reasoning.clone()).unwrap();
    let midstream = fixture("openrouter/chat-stream-midstream-error.response.sse");
    let r = replay(vec![
        (200, JSON, usage1),
        (200, JSON, tools),
        (200, SSE, reasoning),
        (200, SSE, midstream),
        (
            429,
            JSON,
            fixture("openrouter/chat-error-429.1.response.json"),
        ),
    ])
    .await;
    let (gw, key) = gateway(
        &r,
        "openai",
        "openai/gpt-5-mini",
        "openai/gpt-5-mini",
        "0.25",
        "2",
    )
    .await;

    let body = gw
        .post("/api/v1/chat/completions", &key.key, &{
            let mut b = body_of("openrouter/chat-nonstream-usage.1.request.json");
            b["model"] = "openai/gpt-5-mini".into();
            b
        })
        .await
        .text()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        up1["choices"][0]["message"]["content"]
    );
    assert_eq!(
        v["choices"][0]["message"]["reasoning"],
        up1["choices"][0]["message"]["reasoning"]
    );
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        704
    );
    assert_eq!(
        dec(&raw_number(&body, "cost")),
        cost(&[(17, "0.25"), (1515, "2")])
    );

    let mut b = body_of("openrouter/chat-nonstream-tool-calling.request.json");
    b["model"] = "openai/gpt-5-mini".into();
    let v: Value = gw
        .post("/api/v1/chat/completions", &key.key, &b)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    let rec_call = &up_tools["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], rec_call["id"]);
    assert_eq!(call["function"], rec_call["function"]);

    let mut b = body_of("openrouter/chat-stream-reasoning.request.json");
    b["model"] = "openai/gpt-5-mini".into();
    let out = gw
        .post("/api/v1/chat/completions", &key.key, &b)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        concat_deltas(&out, "reasoning"),
        concat_deltas(&rec_reasoning, "reasoning")
    );
    assert_eq!(
        concat_deltas(&out, "content"),
        concat_deltas(&rec_reasoning, "content")
    );
    let sent = r.seen.lock()[2].clone();
    assert_eq!(
        sent["reasoning"],
        json!({"enabled": true}),
        "the OpenRouter dialect keeps the reasoning object"
    );

    // A recorded mid-stream error reaches the client as OpenRouter's error chunk.
    let mut b = body_of("openrouter/chat-stream-midstream-error.request.json");
    b["model"] = "openai/gpt-5-mini".into();
    let out = gw
        .post("/api/v1/chat/completions", &key.key, &b)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&out);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let err: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Token limit reached"),
        "{err}"
    );
    assert_eq!(err["choices"][0]["finish_reason"], "error");

    let resp = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "openai/gpt-5-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let msg = error_message(resp, 429).await;
    assert!(msg.contains("temporarily rate-limited"), "{msg}");
}
