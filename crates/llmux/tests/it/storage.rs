//! The store over time: monthly partitions (PostgreSQL) and retention of raw records, which
//! keeps rollups (rankings, activity) and the books intact. Runs on SQLite, and on
//! PostgreSQL when the suite runs there (`LLMUX_TEST_POSTGRES`).

use serde_json::{Value, json};

use crate::harness::*;

fn offset_to(date: &str) -> String {
    let at = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    (at - chrono::Utc::now().timestamp_millis()).to_string()
}

async fn partitions(url: &str) -> Vec<String> {
    if !url.starts_with("postgres") {
        return Vec::new();
    }
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'generations' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter().map(|r| r.0).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_old_records_and_keeps_rollups_and_books() {
    let sim = sim().await;
    let rest = provider("simco", &format!("{}/v1", sim.base_url()), "")
        + &endpoint(
            "deepseek/deepseek-v3.2",
            "simco",
            "d+tokens=5",
            "0.28",
            "0.42",
            "",
        );
    let mut gw = Gateway::start_with_env(
        "",
        &rest,
        &[("LLMUX_CLOCK_OFFSET_MS", &offset_to("2025-01-15"))],
    )
    .await;
    let key = gw.create_key("t", Some("5"));
    let mut old_tokens = 0;
    for (date, n) in [("2025-01-15", 3), ("2026-02-10", 2)] {
        gw.terminate();
        gw.set_env("LLMUX_CLOCK_OFFSET_MS", &offset_to(date));
        gw.restart().await;
        for _ in 0..n {
            let body = json!({"model": "deepseek/deepseek-v3.2", "messages": [{"role": "user", "content": "keep me"}]});
            let r: Value = gw
                .post("/api/v1/chat/completions", &key.key, &body)
                .await
                .json()
                .await
                .unwrap();
            if date.starts_with("2025") {
                old_tokens += r["usage"]["total_tokens"].as_i64().unwrap();
            }
        }
    }
    gw.terminate();
    let url = gw.db_url();
    if url.starts_with("postgres") {
        let p = partitions(&url).await;
        assert!(p.contains(&"generations_y2025m01".to_string()), "{p:?}");
        assert!(
            p.contains(&"generations_y2026m02".to_string())
                && p.contains(&"generations_y2026m04".to_string()),
            "{p:?}"
        );
    }
    // Keep 200 days of records: January 2025 goes.
    let mut config = std::fs::read_to_string(&gw.config).unwrap();
    config = config.replace(
        "[server]\n",
        "[metering]\nretention_days = 200\n\n[server]\n",
    );
    std::fs::write(&gw.config, config).unwrap();
    gw.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let audit: Value =
            serde_json::from_slice(&gw.cli(&["ledger", "verify", "--json"]).stdout).unwrap();
        if audit["records"] == 2 {
            assert_eq!(audit["clean"], true, "the books still agree: {audit}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old records not removed: {audit}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if url.starts_with("postgres") {
        let p = partitions(&url).await;
        assert!(
            !p.contains(&"generations_y2025m01".to_string()),
            "dropped whole: {p:?}"
        );
    }
    // History stays in the rollups.
    let r: Value = gw
        .http
        .get(gw.url("/api/v1/rankings?period=month&weeks=1&end_date=2025-01-15"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["window_tokens"], old_tokens.to_string(), "{r}");
    let k: Value = gw
        .get("/api/v1/credits", &key.key)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        k["data"]["total_usage"].as_f64().unwrap() > 0.0,
        "charges of removed records still count: {k}"
    );
}
