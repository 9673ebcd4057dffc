//! `POST /embeddings`: relayed, metered and billed per input token.

use serde_json::{Value, json};

use crate::harness::*;

/// The simulator as provider `simco`, serving two embedding models at these prices (USD per
/// million input tokens): `openai/text-embedding-3-small` as itself, and
/// `mistralai/mistral-embed` as `mistral_upstream` (whose name says how the simulator behaves).
async fn gateway(
    small: &str,
    mistral: &str,
    mistral_upstream: &str,
) -> (Gateway, llmux_sim::SimHandle) {
    let sim = sim().await;
    let rest = format!(
        "{}{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint(
            "openai/text-embedding-3-small",
            "simco",
            "text-embedding-3-small",
            small,
            "0",
            ""
        ),
        endpoint(
            "mistralai/mistral-embed",
            "simco",
            mistral_upstream,
            mistral,
            "0",
            ""
        )
    );
    (Gateway::start("", &rest).await, sim)
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_are_billed_per_input_token() {
    let (gw, sim) = gateway("0.02", "0.1", "m+fail=503").await;
    let key = gw.create_key("emb", Some("1"));
    let r = gw
        .post(
            "/api/v1/embeddings",
            &key.key,
            &json!({"model": "openai/text-embedding-3-small", "input": ["one two three", "four"], "dimensions": 4}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let id = generation_id(&r);
    let body = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "openai/text-embedding-3-small");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(dec(&raw_number(&body, "cost")), cost(&[(4, "0.02")]));
    let sent = &sim.state.requests()[0].body;
    assert_eq!(sent["model"], "text-embedding-3-small");
    assert_eq!(sent["dimensions"], 4);

    let g: Value = gw
        .get(&format!("/api/v1/generation?id={id}"), &key.key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["data"]["api_type"], "embeddings");
    assert_eq!(g["data"]["tokens_prompt"], 4);
    assert_eq!(
        dec(g["data"]["total_cost_usd"].as_str().unwrap()),
        cost(&[(4, "0.02")])
    );
    let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
    assert_eq!(
        dec(k["data"]["account"]["balance"].as_str().unwrap()),
        dec("1") - cost(&[(4, "0.02")])
    );

    for (body, status, needle) in [
        (
            json!({"model": "openai/text-embedding-3-small"}),
            400,
            "input",
        ),
        (json!({"input": "x"}), 400, "model"),
        (
            json!({"model": "openai/text-embedding-3-small", "input": [{"a": 1}]}),
            400,
            "input",
        ),
        (
            json!({"model": "nobody/nothing", "input": "x"}),
            400,
            "not a valid model",
        ),
        (
            json!({"model": "openai/text-embedding-3-large", "input": "x"}),
            404,
            "No embeddings endpoints",
        ),
        (
            json!({"model": "mistralai/mistral-embed", "input": "x"}),
            502,
            "simulated error 503",
        ),
    ] {
        let r = gw.post("/api/v1/embeddings", &key.key, &body).await;
        let msg = error_message(r, status).await;
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let models: Value = gw.get_public_json("/api/v1/embeddings/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["mistralai/mistral-embed", "openai/text-embedding-3-small"]
    );
    // Embedding models are not chat models.
    let r = gw
        .post(
            "/api/v1/chat/completions",
            &key.key,
            &json!({"model": "openai/text-embedding-3-small", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_before_its_embeddings_is_recorded_and_billed_nothing() {
    let (gw, _sim) = gateway("1", "1", "m+ttft=20000").await;
    // Credits for exactly one request's hold (18 bytes of input and 16 for the item, at
    // $1 per million tokens): a hold the cancelled request left behind refuses the next.
    let input = "one two three four";
    let key = gw.create_key("leaver", Some(&cost(&[(34, "1")]).to_string()));
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let err = impatient
        .post(gw.url("/api/v1/embeddings"))
        .bearer_auth(&key.key)
        .json(&json!({"model": "mistralai/mistral-embed", "input": input}))
        .send()
        .await
        .expect_err("no answer within 20 s");
    assert!(err.is_timeout(), "{err}");

    let recorded: Vec<(i64, i64, i64, String)> = gw
        .rows_once_written(
            "SELECT status, cancelled, cost, provider_responses FROM generations \
             WHERE requested_model = 'mistralai/mistral-embed'",
        )
        .await;
    assert_eq!(recorded.len(), 1, "one record: {recorded:?}");
    let (status, cancelled, cost_units, attempts) = &recorded[0];
    assert_eq!(
        (*status, *cancelled, *cost_units),
        (499, 1, 0),
        "cancelled, nothing billed"
    );
    let attempts: Value = serde_json::from_str(attempts).unwrap();
    assert_eq!(
        attempts[0]["endpoint"], "m+ttft=20000",
        "the attempt under way is noted: {attempts}"
    );

    let r = gw
        .post(
            "/api/v1/embeddings",
            &key.key,
            &json!({"model": "openai/text-embedding-3-small", "input": input}),
        )
        .await;
    assert_eq!(r.status(), 200, "the hold was released");
    let _ = r.bytes().await;
    let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
    assert_eq!(
        dec(k["data"]["account"]["balance"].as_str().unwrap()),
        cost(&[(34, "1")]) - cost(&[(4, "1")]),
        "the answered request was billed its 4 tokens, the cancelled one nothing"
    );
}
