//! What translation refuses, what it prices, and what it does with garbage from upstreams.

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn what_a_protocol_cannot_express_is_refused_by_name() {
    let sim = sim().await;
    let mut rest = provider_api("anth", "anthropic", &format!("{}/v1", sim.base_url()), "");
    rest += &provider("oai", &format!("{}/v1", sim.base_url()), "");
    rest += &endpoint(
        "anthropic/claude-sonnet-4.5",
        "anth",
        "claude",
        "3",
        "15",
        "",
    );
    rest += &endpoint("deepseek/deepseek-v3.2", "oai", "ds", "1", "1", "");
    let gw = Gateway::start("", &rest).await;
    let key = gw.create_key("t", None);

    let r = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "anthropic/claude-sonnet-4.5", "messages": [{"role": "user", "content": "hi"}],
                    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}}),
        )
        .await;
    let msg = error_message(r, 400).await;
    assert!(msg.contains("response_format"), "{msg}");

    // An Anthropic server tool has no OpenAI-compatible form.
    let r = gw
        .post(
            "/api/v1/messages",
            &key.key,
            &json!({"model": "deepseek/deepseek-v3.2", "max_tokens": 100,
                    "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                    "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("web_search_20250305"),
        "{v}"
    );

    // A tool result for a call that does not exist, in either format.
    let r = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "deepseek/deepseek-v3.2", "messages": [{"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "call_nope", "content": "42"}]}),
        )
        .await;
    let msg = error_message(r, 400).await;
    assert!(msg.contains("call_nope"), "{msg}");
    let r = gw
        .post(
            "/api/v1/messages",
            &key.key,
            &json!({"model": "anthropic/claude-sonnet-4.5", "max_tokens": 100, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "42"}]}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_token_type_has_its_price() {
    let sim = sim_with(llmux_sim::SimConfig {
        record: true,
        prompt_cache: true,
        ..Default::default()
    })
    .await;
    let rest = format!(
        "{}[[endpoints]]\nmodel = \"anthropic/claude-sonnet-4.5\"\nprovider = \"anth\"\nupstream_model = \"claude\"\n\
         pricing = {{ prompt = \"3\", completion = \"15\", input_cache_read = \"0.3\", input_cache_write = \"3.75\", request = \"0.001\", image = \"0.0048\" }}\n",
        provider_api("anth", "anthropic", &format!("{}/v1", sim.base_url()), "")
    );
    let gw = Gateway::start("", &rest).await;
    let key = gw.create_key("t", None);
    let body = json!({"model": "anthropic/claude-sonnet-4.5", "max_tokens": 100, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look at this picture please"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": "I see it."},
        {"role": "user", "content": "echo: describe it"}]});
    let first = gw
        .post("/api/v1/chat/completions", &key.key, &body)
        .await
        .text()
        .await
        .unwrap();
    let second = gw
        .post("/api/v1/chat/completions", &key.key, &body)
        .await
        .text()
        .await
        .unwrap();
    for (text, cached_expected) in [(&first, false), (&second, true)] {
        let v: Value = serde_json::from_str(text).unwrap();
        let u = &v["usage"];
        let (p, c) = (
            u["prompt_tokens"].as_u64().unwrap(),
            u["completion_tokens"].as_u64().unwrap(),
        );
        let cached = u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        assert_eq!(cached > 0, cached_expected, "{u}");
        let expected =
            cost(&[(p - cached, "3"), (cached, "0.3"), (c, "15")]) + dec("0.001") + dec("0.0048");
        assert_eq!(dec(&raw_number(text, "cost")), expected, "{u}");
    }
    // The image reached Anthropic as an image block.
    let sent = &sim.state.requests()[0].body;
    assert_eq!(sent["messages"][0]["content"][1]["type"], "image");
    assert_eq!(
        sent["messages"][0]["content"][1]["source"]["media_type"],
        "image/png"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_from_upstream_is_a_clean_502_or_an_error_chunk() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut content_then_junk = b"data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n".to_vec();
    content_then_junk.extend_from_slice(b"data: {\"choices\": [oops\n\n");
    for api in ["openai", "anthropic", "gemini"] {
        let r = replay(vec![
            (200, "application/json", junk.clone()),
            (200, "text/event-stream", junk.clone()),
            (200, "application/json", b"{\"unexpected\": true}".to_vec()),
        ])
        .await;
        let base = if api == "gemini" {
            format!("{}/v1beta", r.base)
        } else {
            format!("{}/v1", r.base)
        };
        let rest = format!(
            "{}{}",
            provider_api("junk", api, &base, ""),
            endpoint("deepseek/deepseek-v3.2", "junk", "m", "1", "1", "")
        );
        let gw = Gateway::start("stream_keepalive_ms = 10000", &rest).await;
        let key = gw.create_key("t", None);
        for stream in [false, true, false] {
            let resp = gw
                .post(
                    "/api/v1/chat/completions",
                    &key.key,
                    &json!({"model": "deepseek/deepseek-v3.2", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert_eq!(status, 502, "{api} stream={stream}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], 502);
        }
    }
    // Content first, then junk: the stream ends with an error chunk.
    let r = replay(vec![(200, "text/event-stream", content_then_junk)]).await;
    let rest = format!(
        "{}{}",
        provider("junk", &format!("{}/v1", r.base), ""),
        endpoint("deepseek/deepseek-v3.2", "junk", "m", "1", "1", "")
    );
    let gw = Gateway::start("", &rest).await;
    let key = gw.create_key("t", None);
    let out = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "deepseek/deepseek-v3.2", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&out);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let err: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], 502);
    assert!(out.contains("\"content\":\"Hi\""));
}
