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
        .get_public_json("/api/v1/rankings?period=month&weeks=1&end_date=2025-01-15")
        .await;
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

#[tokio::test(flavor = "multi_thread")]
async fn migrate_moves_a_sqlite_installation_to_postgresql() {
    let Some(server) = postgres_server() else {
        return;
    };
    let sim = sim().await;
    let rest = provider("simco", &format!("{}/v1", sim.base_url()), "")
        + &endpoint(
            "deepseek/deepseek-v3.2",
            "simco",
            "d+tokens=6",
            "0.28",
            "0.42",
            "",
        )
        + &endpoint("z-ai/glm-5", "simco", "g+tokens=9", "1", "3.2", "");
    let mut gw = Gateway::start_sqlite("", &rest).await;
    let alice = gw.create_key("alice", Some("3"));
    let bob = gw.create_key("bob", None);
    let out = gw.cli(&["credits", "add", &alice.account, "2", "--note", "top-up"]);
    assert!(out.status.success());
    let mut ids = Vec::new();
    for (i, model) in ["deepseek/deepseek-v3.2", "z-ai/glm-5"]
        .iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        let key = if i % 3 == 0 { &bob } else { &alice };
        let r = gw
            .http
            .post(gw.url("/api/v1/chat/completions"))
            .bearer_auth(&key.key)
            .header("HTTP-Referer", "https://moving.example")
            .json(&json!({"model": model, "stream": i % 2 == 0, "messages": [{"role": "user", "content": "move me"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push((generation_id(&r), key.key.clone()));
        let _ = r.text().await;
    }
    gw.terminate();
    let get_all = |gw: &Gateway| {
        let (http, base, a, b) = (
            gw.http.clone(),
            gw.base.clone(),
            alice.key.clone(),
            bob.key.clone(),
        );
        async move {
            let mut out = Vec::new();
            for (path, key) in [
                ("/api/v1/rankings?period=day&weeks=1&by=model", &a),
                ("/api/v1/rankings?period=day&weeks=1&by=app", &a),
                ("/api/v1/credits", &a),
                ("/api/v1/credits", &b),
                ("/api/v1/key", &b),
            ] {
                let v: Value = http
                    .get(format!("{base}{path}"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                out.push(v);
            }
            out
        }
    };
    gw.restart().await;
    let before = get_all(&gw).await;
    gw.terminate();

    let target = create_postgres_database(&server).await;
    let from = gw.db_url();
    let out = gw.cli(&["migrate", "--from", &from, "--to", &target]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("generations      12 rows") && text.contains("the destination matches"),
        "{text}"
    );
    // A second copy into the now populated database is refused.
    let again = gw.cli(&["migrate", "--from", &from, "--to", &target]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The same installation, now on PostgreSQL: keys, balances, records, rankings, books.
    let config = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&gw.config, config.replace("sqlite://llmux.db", &target)).unwrap();
    gw.restart().await;
    let after = get_all(&gw).await;
    assert_eq!(before[..4], after[..4]);
    assert_eq!(before[4]["data"]["usage"], after[4]["data"]["usage"]);
    for (id, key) in &ids {
        let r = gw.get(&format!("/api/v1/generation?id={id}"), key).await;
        assert_eq!(r.status(), 200, "{id}");
    }
    let audit: Value =
        serde_json::from_slice(&gw.cli(&["ledger", "verify", "--json"]).stdout).unwrap();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(audit["records"], 12);
    // New traffic lands next to the moved records.
    let r = gw
        .post("/api/v1/chat/completions", &alice.key, &json!({"model": "z-ai/glm-5", "messages": [{"role": "user", "content": "hello again"}]}))
        .await;
    assert_eq!(r.status(), 200);
    gw.terminate();
    drop_postgres_database(&target);
}

/// A served request of `key`'s at `at_ms`, costing (and charged) `cost` picodollars.
fn charged_record(key: &Key, id: &str, at_ms: i64, cost: i64) -> llmux::metering::GenerationRecord {
    use llmux::metering::{Charge, GenerationRecord};
    use llmux::money::Money;
    let mut r = GenerationRecord {
        id: id.into(),
        created_at_ms: at_ms,
        account_id: Some(key.account.clone()),
        key_hash: Some(key.hash.clone()),
        api_type: "completions".into(),
        requested_model: "openai/gpt-4o-mini".into(),
        model: Some("openai/gpt-4o-mini".into()),
        provider: Some("openai".into()),
        status: 200,
        cost: Money(cost),
        charge: Some(Charge {
            account_id: key.account.clone(),
            key_hash: key.hash.clone(),
            amount: Money(cost),
        }),
        ..Default::default()
    };
    r.usage.prompt_tokens = 10;
    r.usage.completion_tokens = 5;
    r
}

/// A gateway, a key with 5 credits on it, and the gateway's store opened beside it.
async fn gateway_key_and_store() -> (Gateway, Key, llmux::storage::Store) {
    let gw = Gateway::start("", "").await;
    let key = gw.create_key("t", Some("5"));
    let store = llmux::storage::Store::open(&gw.db_url()).await.unwrap();
    (gw, key, store)
}

/// The model rollups of `model` (every period's), at least one.
async fn model_rollups(
    store: &llmux::storage::Store,
    model: &str,
) -> Vec<(
    llmux::metering::rollup::ModelKey,
    llmux::metering::rollup::Sums,
)> {
    let rollups = store.rollup_snapshot().await.unwrap();
    let models: Vec<_> = rollups
        .models
        .into_iter()
        .filter(|(k, _)| &*k.model == model)
        .collect();
    assert!(!models.is_empty(), "no rollups of {model}");
    models
}

/// A batch written again (retried after a commit whose answer was lost, or a spool replayed
/// after a crash) adds only its new records: each record, its charge and its share of the
/// rollups count once. Written first through the pool's connections, then through the
/// metering writer's own (rusqlite's on SQLite), which asks which are there already.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_written_again_counts_each_record_once() {
    use llmux::metering::rollup::Privacy;

    let (_gw, key, store) = gateway_key_and_store().await;
    let now = llmux::clock::now_ms();
    let record = |id: &str| charged_record(&key, id, now, 1_000_000);
    let (a, b, c) = (record("gen-a"), record("gen-b"), record("gen-c"));
    let privacy = Privacy::default();
    let before = store.balance(&key.account).await.unwrap();

    store
        .write_generations(&[a.clone(), b.clone()], "n", &privacy)
        .await
        .unwrap();
    let mut writer = store.connect_writer().await.unwrap();
    store
        .write_generations_on(&mut writer, &[a, b, c], "n", &privacy)
        .await
        .unwrap();
    writer.close().await.unwrap();

    assert_eq!(store.generation_count().await.unwrap(), 3);
    let after = store.balance(&key.account).await.unwrap();
    assert_eq!(before.0 - after.0, 3_000_000, "three charges");
    let audit = store.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(
        (audit.charged_records, audit.charges),
        (3, 2),
        "one charge entry for each batch's new records"
    );
    for (k, sums) in model_rollups(&store, "openai/gpt-4o-mini").await {
        assert_eq!(
            (sums.requests, sums.prompt, sums.completion),
            (3, 30, 15),
            "{k:?}"
        );
    }
}

/// A batch larger than one statement holds (written as statements of 200 rows, then of 64,
/// 32, ... rows for the rest, so that each connection keeps a few compiled shapes) is written
/// whole, and written again with
/// one more record adds only that one.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_batch_is_written_whole_in_statements_of_few_shapes() {
    use llmux::metering::rollup::Privacy;

    let (_gw, key, store) = gateway_key_and_store().await;
    let now = llmux::clock::now_ms();
    let batch: Vec<_> = (0..701)
        .map(|i| charged_record(&key, &format!("gen-{i:04}"), now, 1_000 + i))
        .collect();
    let privacy = Privacy::default();
    let before = store.balance(&key.account).await.unwrap();
    store
        .write_generations(&batch[..700], "n", &privacy)
        .await
        .unwrap();
    store
        .write_generations(&batch, "n", &privacy)
        .await
        .unwrap();

    assert_eq!(store.generation_count().await.unwrap(), 701);
    let after = store.balance(&key.account).await.unwrap();
    let expected: i64 = (0..701).map(|i| 1_000 + i).sum();
    assert_eq!(before.0 - after.0, expected, "each record charged once");
    let audit = store.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!((audit.records, audit.charged_records), (701, 701));
    for (k, sums) in model_rollups(&store, "openai/gpt-4o-mini").await {
        assert_eq!(sums.requests, 701, "{k:?}");
    }
}

/// A batch's charges are one ledger entry per key and UTC day: what a key spent since midnight
/// UTC (where daily, weekly and monthly limits start) counts that day's records only. The
/// audit finds an entry that disagrees with its records, and records no entry charged.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_across_midnight_charges_each_day_apart() {
    use llmux::metering::rollup::Privacy;

    let (gw, key, store) = gateway_key_and_store().await;
    let day = 86_400_000;
    let midnight = llmux::clock::now_ms().div_euclid(day) * day;
    let batch = [
        charged_record(&key, "gen-y1", midnight - 2, 1_000),
        charged_record(&key, "gen-t1", midnight, 20_000),
        charged_record(&key, "gen-y2", midnight - 1, 300_000),
        charged_record(&key, "gen-t2", midnight + 5, 4_000_000),
    ];
    store
        .write_generations(&batch, "n", &Privacy::default())
        .await
        .unwrap();

    assert_eq!(
        store.key_spend_since(&key.hash, midnight).await.unwrap().0,
        4_020_000,
        "today's two"
    );
    assert_eq!(
        store
            .key_spend_since(&key.hash, midnight - day)
            .await
            .unwrap()
            .0,
        4_321_000,
        "both days"
    );
    let audit = store.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(
        (audit.records, audit.charged_records, audit.charges),
        (4, 4, 2)
    );

    // A record charged on its own, as before batch charges (a database written by an earlier
    // version), is audited too.
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&gw.db_url()).await.unwrap();
    let run = async |sql: &str| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&db)
            .await
            .unwrap();
    };
    let at = midnight + 10;
    run(&format!(
        "INSERT INTO generations (id, created_at, account_id, key_hash, api_type, requested_model, \
         streamed, cancelled, tokens_prompt, tokens_completion, tokens_reasoning, tokens_cached, \
         tokens_cache_write, usage_estimated, cost, status, is_byok) \
         VALUES ('gen-old', {at}, '{}', '{}', 'completions', 'm', 0, 0, 1, 1, 0, 0, 0, 0, 7, 200, 0)",
        key.account, key.hash
    ))
    .await;
    run(&format!(
        "INSERT INTO ledger (account_id, key_hash, kind, amount, generation_id, node, created_at) \
         VALUES ('{}', '{}', 'charge', -7, 'gen-old', 'n', {at})",
        key.account, key.hash
    ))
    .await;
    let audit = store.audit().await.unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(
        (audit.records, audit.charged_records, audit.charges),
        (5, 5, 3)
    );
    run("UPDATE generations SET cost = 8 WHERE id = 'gen-old'").await;
    assert_eq!(store.audit().await.unwrap().mismatched_charges, 1);
    run("UPDATE generations SET cost = 7 WHERE id = 'gen-old'").await;

    run("UPDATE generations SET cost = cost + 1 WHERE id = 'gen-t2'").await;
    let audit = store.audit().await.unwrap();
    assert_eq!(audit.mismatched_charges, 1, "{audit:?}");
    run("DELETE FROM ledger WHERE kind = 'charge' AND created_at = (SELECT MIN(created_at) FROM generations)").await;
    let audit = store.audit().await.unwrap();
    assert_eq!(
        (
            audit.mismatched_charges,
            audit.records_without_charge,
            audit.charged_records
        ),
        (1, 2, 3),
        "{audit:?}"
    );
    assert!(!audit.is_clean());
    db.close().await;
}
