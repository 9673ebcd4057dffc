//! A graceful shutdown writes every pending generation record.

use serde_json::json;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_pending_records() {
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint("deepseek/deepseek-v3.2", "simco", "ok", "0.28", "0.42", "")
    );
    // A flush interval far beyond the test: only the shutdown can write the records.
    let mut gw = Gateway::start(
        "",
        &format!("[metering]\nflush_interval_ms = 600000\n\n{rest}"),
    )
    .await;
    let key = gw.create_key("t", Some("1"));
    let n = 25;
    for i in 0..n {
        let r = gw
            .post(
                "/api/v1/chat/completions",
                &key.key,
                &json!({"model": "deepseek/deepseek-v3.2", "stream": i % 2 == 0, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.text().await.unwrap();
    }
    let status = gw.terminate();
    assert!(status.success(), "clean exit: {status:?}\n{}", gw.log());

    let store = llmux::storage::Store::open(&gw.db_url()).await.unwrap();
    assert_eq!(store.generation_count().await.unwrap(), n);
    // Every record's charge is in the ledger: the balance is the credits minus their sum.
    let balance = store.balance(&key.account).await.unwrap();
    assert!(balance < llmux::money::Money::parse_usd("1").unwrap());
}
