//! Accounts, credits and limits: exact under concurrency, consistent after a crash, and the
//! account API with its errors; BYOK.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

pub(crate) const MODEL: &str = "deepseek/deepseek-v3.2";
/// Words the simulator echoes back: exactly this many completion tokens per request.
pub(crate) const K: u64 = 5;
/// USD per million completion tokens; prompts are free, so a request costs K × P / 1e6.
pub(crate) const P: &str = "2";

pub(crate) fn echo_request() -> Value {
    json!({"model": MODEL, "max_tokens": K, "messages": [{"role": "user", "content": "echo: a b c d e"}]})
}

async fn gateway(server_extra: &str) -> (Gateway, llmux_sim::SimHandle) {
    gateway_serving(server_extra, &endpoint(MODEL, "simco", "m", "0", P, "")).await
}

/// A gateway whose `endpoints` are served by the simulator, as provider `simco`.
async fn gateway_serving(server_extra: &str, endpoints: &str) -> (Gateway, llmux_sim::SimHandle) {
    let sim = sim().await;
    let rest = format!(
        "{}{endpoints}",
        provider("simco", &format!("{}/v1", sim.base_url()), "")
    );
    (Gateway::start(server_extra, &rest).await, sim)
}

/// Fire `n` requests at once, spread over `nodes` in turn; the statuses, in no order.
pub(crate) async fn burst(nodes: &[Gateway], key: &str, n: usize) -> Vec<u16> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let gw = &nodes[i % nodes.len()];
        let (http, url, key) = (
            gw.http.clone(),
            gw.url("/api/v1/chat/completions"),
            key.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&echo_request())
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            let _ = r.bytes().await;
            s
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

pub(crate) fn one_request_cost() -> rust_decimal::Decimal {
    cost(&[(K, P)])
}

#[tokio::test(flavor = "multi_thread")]
async fn credits_for_n_requests_admit_exactly_n_of_ten_n() {
    let (gw, _sim) = gateway("").await;
    let n = 8;
    let credits = one_request_cost() * rust_decimal::Decimal::from(n);
    let key = gw.create_key("n", Some(&credits.to_string()));
    let statuses = burst(std::slice::from_ref(&gw), &key.key, 10 * n).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, n, "exactly N succeed: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 402),
        "{statuses:?}"
    );
    let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
    assert_eq!(
        dec(k["data"]["account"]["balance"].as_str().unwrap()),
        rust_decimal::Decimal::ZERO
    );
    let audit = gw.cli(&["ledger", "verify", "--json"]);
    let audit: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(audit["charged_records"], n as u64);
}

/// A client that leaves while a whole (non-streamed) answer is awaited: the upstream call is
/// dropped, the record says so (499, cancelled) with nothing billed, and the request's hold on
/// the credits is released, so the one request the credits cover is still admitted.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_before_a_whole_answer_is_recorded_and_billed_nothing() {
    const SLOW: &str = "z-ai/glm-5";
    let endpoints = format!(
        "{}{}",
        endpoint(MODEL, "simco", "m", "0", P, ""),
        endpoint(SLOW, "simco", "m+ttft=20000", "0", P, "")
    );
    let (gw, _sim) = gateway_serving("", &endpoints).await;
    // Credits for exactly one request's worst case (the slow model's is the same): a hold the
    // cancelled request left behind would refuse the next with 402.
    let key = gw.create_key("leaver", Some(&one_request_cost().to_string()));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let slow = json!({"model": SLOW, "max_tokens": K, "messages": [{"role": "user", "content": "echo: a b c d e"}]});
    let err = impatient
        .post(gw.url("/api/v1/chat/completions"))
        .bearer_auth(&key.key)
        .json(&slow)
        .send()
        .await
        .expect_err("no answer within 20 s");
    assert!(err.is_timeout(), "{err}");

    let recorded: Vec<(i64, i64, i64)> = gw
        .rows_once_written(
            "SELECT status, cancelled, cost FROM generations WHERE requested_model = 'z-ai/glm-5'",
        )
        .await;
    assert_eq!(
        recorded,
        vec![(499, 1, 0)],
        "one record: cancelled, nothing billed"
    );

    let resp = gw
        .post("/api/v1/chat/completions", &key.key, &echo_request())
        .await;
    assert_eq!(resp.status(), 200, "the hold was released");
    let _ = resp.bytes().await;
    let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
    assert_eq!(
        dec(k["data"]["account"]["balance"].as_str().unwrap()),
        rust_decimal::Decimal::ZERO,
        "the one answered request was billed, the cancelled one was not"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_limit_admits_exactly_its_worth() {
    let (gw, _sim) = gateway("").await;
    let n = 6;
    let limit = one_request_cost() * rust_decimal::Decimal::from(n);
    let out = gw.cli(&[
        "keys",
        "create",
        "--name",
        "limited",
        "--limit",
        &limit.to_string(),
        "--limit-reset",
        "daily",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = key["key"].as_str().unwrap();
    let statuses = burst(std::slice::from_ref(&gw), k, 10 * n).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        n,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 403),
        "{statuses:?}"
    );
    let r = gw
        .post("/api/v1/chat/completions", k, &echo_request())
        .await;
    let msg = error_message(r, 403).await;
    assert!(msg.starts_with("Key limit exceeded"), "{msg}");
    let info: Value = gw.get("/api/v1/key", k).await.json().await.unwrap();
    assert_eq!(info["data"]["limit_remaining"], 0.0);
    assert_eq!(dec(&info["data"]["usage_daily"].to_string()), limit);
}

/// A key without a limit is loaded without reading its records; given a limit later (here
/// after a restart, so none of its spending is in the process's memory), what it spent in
/// the window before counts against it.
#[tokio::test(flavor = "multi_thread")]
async fn a_limit_set_later_counts_what_the_key_spent_before() {
    let (mut gw, _sim) = gateway("").await;
    let mk = gw.create_management_key("admin", None).key;
    let created: Value = gw
        .post("/api/v1/keys", &mk, &json!({"name": "worker"}))
        .await
        .json()
        .await
        .unwrap();
    let worker = created["key"].as_str().unwrap().to_string();
    let hash = created["data"]["hash"].as_str().unwrap().to_string();
    let chat = echo_request();
    // Four requests, then one after the restart: no limit yet.
    answered_across_restarts(&mut gw, &worker, &chat, &[4, 1]).await;

    // Worth three requests a day: five were made today.
    let limit = one_request_cost() * rust_decimal::Decimal::from(3);
    let r = gw
        .http
        .patch(gw.url(&format!("/api/v1/keys/{hash}")))
        .bearer_auth(&mk)
        .json(&json!({"limit": limit.to_string().parse::<f64>().unwrap(), "limit_reset": "daily"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The running gateway picks the change up (within its sync interval).
    let mut seen = false;
    for _ in 0..100 {
        let k: Value = gw.get("/api/v1/key", &worker).await.json().await.unwrap();
        if !k["data"]["limit"].is_null() {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the new limit reached the gateway");
    let r = gw.post("/api/v1/chat/completions", &worker, &chat).await;
    let msg = error_message(r, 403).await;
    assert!(
        msg.starts_with("Key limit exceeded"),
        "five requests' worth spent today: {msg}"
    );
}

/// `counts[i]` chat requests of `body` in the gateway's run `i` (stopped gracefully and
/// started again between runs), each answered 200.
async fn answered_across_restarts(gw: &mut Gateway, key: &str, body: &Value, counts: &[usize]) {
    for (run, n) in counts.iter().enumerate() {
        if run > 0 {
            assert!(gw.terminate().success());
            gw.restart().await;
        }
        for _ in 0..*n {
            let r = gw.post("/api/v1/chat/completions", key, body).await;
            assert_eq!(r.status(), 200, "run {run}");
        }
    }
}

/// Free-model requests per day count the day's requests of earlier runs: the first free
/// request after a restart reads them from the records.
#[tokio::test(flavor = "multi_thread")]
async fn free_requests_per_day_count_across_restarts() {
    let (mut gw, _sim) =
        gateway_serving("", &endpoint("z-ai/glm-4.6", "simco", "m", "0", "0", "")).await;
    let key = gw.create_key("free", None);
    let free = json!({"model": "z-ai/glm-4.6:free", "max_tokens": K,
                      "messages": [{"role": "user", "content": "echo: free"}]});
    // 20 a minute at most: two runs of 20 (the minute's window is per process), then 10.
    answered_across_restarts(&mut gw, &key.key, &free, &[20, 20, 10]).await;
    let r = gw.post("/api/v1/chat/completions", &key.key, &free).await;
    let msg = error_message(r, 429).await;
    assert!(
        msg.contains("50 free-model requests per day"),
        "the 51st free request of the day: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_admit_r_per_minute_with_headers() {
    let (gw, _sim) = gateway("").await;
    let r_limit = 7;
    let out = gw.cli(&[
        "keys",
        "create",
        "--name",
        "rl",
        "--rpm",
        &r_limit.to_string(),
        "--json",
    ]);
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = key["key"].as_str().unwrap();
    let statuses = burst(std::slice::from_ref(&gw), k, 10 * r_limit).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        r_limit,
        "{statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    let r = gw
        .post("/api/v1/chat/completions", k, &echo_request())
        .await;
    assert_eq!(r.status(), 429);
    let h = r.headers();
    assert_eq!(h["x-ratelimit-limit"], r_limit.to_string().as_str());
    assert_eq!(h["x-ratelimit-remaining"], "0");
    let reset: i64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    let retry: i64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(reset > llmux::clock::now_ms() && reset <= llmux::clock::now_ms() + 60_000);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 429);

    // Tokens per minute: once the minute's tokens are spent, requests wait.
    let out = gw.cli(&["keys", "create", "--name", "tpm", "--tpm", "20", "--json"]);
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let k = key["key"].as_str().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            gw.post("/api/v1/chat/completions", k, &echo_request())
                .await
                .status()
                .as_u16(),
        );
    }
    // Each request uses more than 5 tokens (prompt and answer): a few pass, then 429.
    assert!(
        statuses[0] == 200 && *statuses.last().unwrap() == 429,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_leaves_consistent_books() {
    let sim = sim().await;
    let rest = format!(
        "[metering]\nflush_interval_ms = 50\n\n{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "simco", "m+tps=400", "0", P, "")
    );
    let mut gw = Gateway::start("", &rest).await;
    let key = gw.create_key("load", Some("1"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (http, url, k, stop) = (
            gw.http.clone(),
            gw.url("/api/v1/chat/completions"),
            key.key.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut body = echo_request();
                body["stream"] = (i % 2 == 0).into();
                if let Ok(r) = http.post(&url).bearer_auth(&k).json(&body).send().await {
                    let _ = r.bytes().await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gw.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    // The books agree after the crash: no charge without its record, none twice.
    let audit = gw.cli(&["ledger", "verify", "--json"]);
    let v: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(v["clean"], true, "{v}");
    assert!(v["records"].as_u64().unwrap() > 10, "load ran: {v}");
    // After a restart the balance is the ledger's, with no reservation left holding credits:
    // a request whose worst case is the whole balance is admitted.
    gw.restart().await;
    let store = llmux::storage::Store::open(&gw.db_url()).await.unwrap();
    let balance = store.balance(&key.account).await.unwrap();
    let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
    assert_eq!(k["data"]["account"]["balance"], balance.to_string());
    let r = gw
        .post("/api/v1/chat/completions", &key.key, &echo_request())
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_account_api_and_its_errors() {
    let (gw, _sim) = gateway("").await;
    let Key {
        key: mk, account, ..
    } = gw.create_management_key("admin", Some("10"));

    // A management key cannot call models.
    let r = gw
        .post("/api/v1/chat/completions", &mk, &echo_request())
        .await;
    assert_eq!(r.status(), 403);

    // Create (201, key shown once).
    let r = gw
        .post("/api/v1/keys", &mk, &json!({"name": "worker", "limit": 0.5, "limit_reset": "weekly", "include_byok_in_limit": true}))
        .await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let worker = created["key"].as_str().unwrap().to_string();
    let hash = created["data"]["hash"].as_str().unwrap().to_string();
    assert_eq!(created["data"]["limit"], 0.5);
    assert_eq!(created["data"]["limit_reset"], "weekly");
    assert_eq!(created["data"]["workspace_id"], "default");
    assert!(
        gw.post("/api/v1/chat/completions", &worker, &echo_request())
            .await
            .status()
            == 200
    );

    // Read, list.
    let one: Value = gw
        .get(&format!("/api/v1/keys/{hash}"), &mk)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["data"]["name"], "worker");
    assert!(one["data"]["usage"].as_f64().unwrap() > 0.0);
    assert!(one["data"].get("key").is_none());
    let list: Value = gw.get("/api/v1/keys", &mk).await.json().await.unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "management keys are not listed"
    );

    // Credits and activity.
    let c: Value = gw.get("/api/v1/credits", &mk).await.json().await.unwrap();
    assert_eq!(c["data"]["total_credits"], 10.0);
    assert!(c["data"]["total_usage"].as_f64().unwrap() > 0.0);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let r = gw.get(&format!("/api/v1/activity?date={today}"), &mk).await;
    assert_eq!(r.status(), 400, "today is not a completed day");
    let a: Value = gw.get("/api/v1/activity", &mk).await.json().await.unwrap();
    assert!(
        a["data"].as_array().unwrap().is_empty(),
        "nothing on completed days yet"
    );

    // Update: disable, then the key stops working; bad values are refused.
    for (body, needle) in [
        (json!({"limit": -5}), "negative"),
        (json!({"limit": "lots"}), "decimal"),
        (json!({"limit_reset": "hourly"}), "limit_reset"),
        (json!({"disabled": "yes"}), "disabled"),
        (json!({"name": ""}), "name"),
    ] {
        let r = gw
            .http
            .patch(gw.url(&format!("/api/v1/keys/{hash}")))
            .bearer_auth(&mk)
            .json(&body)
            .send()
            .await
            .unwrap();
        let msg = error_message(r, 400).await;
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let r = gw
        .http
        .patch(gw.url(&format!("/api/v1/keys/{hash}")))
        .bearer_auth(&mk)
        .json(&json!({"disabled": true, "name": "paused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["data"]["disabled"].as_bool(), v["data"]["name"].as_str()),
        (Some(true), Some("paused"))
    );
    let r = gw
        .post("/api/v1/chat/completions", &worker, &echo_request())
        .await;
    assert_eq!(r.status(), 401, "disabled through the API: refused at once");

    // Errors: bad hashes, wrong key type, malformed bodies, expired keys.
    assert_eq!(gw.get("/api/v1/keys/0000", &mk).await.status(), 404);
    assert_eq!(
        gw.get(&format!("/api/v1/keys/{hash}"), &worker)
            .await
            .status(),
        401
    );
    let other = gw.create_key("other", None);
    assert_eq!(gw.get("/api/v1/keys", &other.key).await.status(), 403);
    assert_eq!(
        gw.get(&format!("/api/v1/keys/{}", other.hash), &mk)
            .await
            .status(),
        404,
        "another account's key"
    );
    for body in [
        json!({}),
        json!({"name": 5}),
        json!({"name": "x", "limit": -1}),
        json!({"name": "x", "expires_at": "soon"}),
    ] {
        let r = gw.post("/api/v1/keys", &mk, &body).await;
        assert_eq!(r.status(), 400, "{body}");
    }
    let r = gw
        .http
        .post(gw.url("/api/v1/keys"))
        .bearer_auth(&mk)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = gw
        .post(
            "/api/v1/keys",
            &mk,
            &json!({"name": "old", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let expired: Value = r.json().await.unwrap();
    let r = gw
        .post(
            "/api/v1/chat/completions",
            expired["key"].as_str().unwrap(),
            &echo_request(),
        )
        .await;
    assert_eq!(error_message(r, 401).await, "This API key has expired");

    // Delete.
    let r = gw
        .http
        .delete(gw.url(&format!("/api/v1/keys/{hash}")))
        .bearer_auth(&mk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"deleted": true}));
    assert_eq!(
        gw.get(&format!("/api/v1/keys/{hash}"), &mk).await.status(),
        404
    );
    let r = gw
        .http
        .delete(gw.url(&format!("/api/v1/keys/{hash}")))
        .bearer_auth(&mk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The CLI sees the same account.
    let out = gw.cli(&["accounts", "show", &account]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("credited  $10"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn byok_keys_are_used_charged_a_fee_and_never_shown() {
    let sim = sim_with(llmux_sim::SimConfig {
        record: true,
        require_key: Some("sk-own-provider-key".into()),
        ..Default::default()
    })
    .await;
    let rest = format!(
        "{}{}",
        provider(
            "simco",
            &format!("{}/v1", sim.base_url()),
            "api_key_env = \"LLMUX_TEST_SHARED\""
        ),
        endpoint(MODEL, "simco", "m", "0", P, "")
    );
    let gw = Gateway::start_with_env(
        "",
        &rest,
        &[
            ("LLMUX_SECRETS_KEY", &"7".repeat(64)),
            ("LLMUX_TEST_SHARED", "sk-shared-key"),
            ("LLMUX_LOG", "debug"),
        ],
    )
    .await;
    let admin = gw.create_management_key("admin", Some("1"));
    let (mk, account) = (admin.key.as_str(), admin.account.as_str());
    let out = gw.cli(&[
        "keys",
        "create",
        "--name",
        "user",
        "--account",
        account,
        "--json",
    ]);
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    let uk = user["key"].as_str().unwrap();

    // Without the account's own key, the shared key is refused upstream: 502.
    assert_eq!(
        gw.post("/api/v1/chat/completions", uk, &echo_request())
            .await
            .status(),
        502
    );

    // With it (as a fallback after the shared endpoint), the request is served through it.
    let r = gw
        .http
        .put(gw.url("/api/v1/byok/simco"))
        .bearer_auth(mk)
        .json(&json!({"key": "sk-own-provider-key", "mode": "fallback"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set: Value = r.json().await.unwrap();
    assert!(!set.to_string().contains("sk-own-provider-key"));
    let r = gw
        .post("/api/v1/chat/completions", uk, &echo_request())
        .await;
    assert_eq!(r.status(), 200);
    let id = generation_id(&r);
    let body = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["usage"]["is_byok"], true);
    let fee = one_request_cost() * dec("0.05");
    assert_eq!(dec(&raw_number(&body, "cost")), fee, "5% of the price");
    let sent = sim.state.requests();
    let auths: Vec<&str> = sent
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert_eq!(
        auths.last(),
        Some(&"Bearer sk-own-provider-key"),
        "the account's key went upstream"
    );
    assert!(
        auths.contains(&"Bearer sk-shared-key"),
        "after the shared one, tried first in fallback mode"
    );
    let g: Value = gw
        .get(&format!("/api/v1/generation?id={id}"), uk)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["data"]["is_byok"], true);
    assert_eq!(dec(g["data"]["total_cost_usd"].as_str().unwrap()), fee);

    // The key is never returned or logged.
    let list: Value = gw.get("/api/v1/byok", mk).await.json().await.unwrap();
    assert_eq!(list["data"][0]["provider"], "simco");
    assert_eq!(list["data"][0]["mode"], "fallback");
    for text in [list.to_string(), g.to_string(), gw.log()] {
        assert!(!text.contains("sk-own-provider-key"), "leaked: {text}");
    }
    let store = llmux::storage::Store::open(&gw.db_url()).await.unwrap();
    let rows = store.byok_keys(account).await.unwrap();
    assert!(
        !rows[0].sealed.contains("sk-own-provider-key"),
        "stored sealed"
    );

    // Errors: an inference key cannot set keys; unknown providers; removal.
    let r = gw
        .http
        .put(gw.url("/api/v1/byok/simco"))
        .bearer_auth(uk)
        .json(&json!({"key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = gw
        .http
        .put(gw.url("/api/v1/byok/nobody"))
        .bearer_auth(mk)
        .json(&json!({"key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = gw
        .http
        .put(gw.url("/api/v1/byok/simco"))
        .bearer_auth(mk)
        .json(&json!({"mode": "sometimes", "key": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = gw
        .http
        .delete(gw.url("/api/v1/byok/simco"))
        .bearer_auth(mk)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        gw.post("/api/v1/chat/completions", uk, &echo_request())
            .await
            .status(),
        502
    );
}

/// On PostgreSQL a ledger id is taken when its row is written and seen when its transaction
/// commits, not always in order: a top-up committed after an entry with a higher id is still
/// counted (the node's reading of the ledger waits at the id it has not seen).
#[tokio::test(flavor = "multi_thread")]
async fn a_top_up_committed_after_a_later_entry_is_counted() {
    let Some(server) = postgres_server() else {
        return;
    };
    let database = create_postgres_database(&server).await;
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "simco", "m", "0", P, "")
    );
    let gw = Gateway::start_on(&database, "", &rest, &[]).await;
    let (a, b) = (gw.create_key("a", Some("1")), gw.create_key("b", Some("1")));
    for k in [&a, &b] {
        let r = gw
            .post("/api/v1/chat/completions", &k.key, &echo_request())
            .await;
        assert_eq!(r.status(), 200, "the account is loaded on the node");
        let _ = r.bytes().await;
    }
    let balance = |key: String| {
        let gw = &gw;
        async move {
            let k: Value = gw.get("/api/v1/key", &key).await.json().await.unwrap();
            dec(k["data"]["account"]["balance"].as_str().unwrap())
        }
    };

    // A top-up of a's is written in a transaction that stays open while one of b's (a higher
    // id) commits, and the node reads the ledger meanwhile.
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&database).await.unwrap();
    let mut late = db.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ledger (account_id, kind, amount, node, created_at, note) \
         VALUES ($1, 'topup', $2, 'test', $3, 'committed late')",
    )
    .bind(&a.account)
    .bind(2 * llmux::money::PICO_PER_USD)
    .bind(llmux::clock::now_ms())
    .execute(&mut *late)
    .await
    .unwrap();
    let out = gw.cli(&["credits", "add", &b.account, "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = std::time::Instant::now();
    while balance(b.key.clone()).await != dec("4") - one_request_cost() {
        assert!(start.elapsed() < Duration::from_secs(5), "b's top-up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    late.commit().await.unwrap();

    let start = std::time::Instant::now();
    loop {
        let got = balance(a.key.clone()).await;
        if got == dec("3") - one_request_cost() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a's top-up, committed late, is not counted: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(balance(b.key.clone()).await, dec("4") - one_request_cost());
    db.close().await;
    drop(gw);
    drop_postgres_database(&database);
}
