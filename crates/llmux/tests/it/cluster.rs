//! Three gateway nodes on one PostgreSQL and one Redis: credits, key limits and rate limits
//! hold exactly across them; a node killed and Redis restarted under load lose no record;
//! rankings and activity equal one node's for the same traffic.
//!
//! The nodes use the machine's PostgreSQL (a fresh database per test) and its Redis on 6379
//! (under a key prefix per test), except where a test stops or restarts Redis: those run a
//! `redis-server` of their own on a free port.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::billing::{K, MODEL, P, burst, echo_request, one_request_cost};
use crate::harness::*;

/// The cluster's Redis: the machine's (127.0.0.1:6379) under a key prefix of the test's own,
/// whose keys are deleted afterwards; or a `redis-server` of the test's own, for the tests
/// that stop or restart it.
enum TestRedis {
    /// The machine's Redis, reached directly or through a [`TcpGate`].
    Machine {
        prefix: String,
        relay: Option<TcpGate>,
    },
    Own(RedisServer),
}

const MACHINE_REDIS: &str = "redis://127.0.0.1:6379";
const MACHINE_REDIS_ADDR: &str = "127.0.0.1:6379";

impl TestRedis {
    /// The machine's Redis, or None (the test says why it skips) when nothing listens there,
    /// unless `LLMUX_REQUIRE_SERVICES=1`, where that fails the test.
    fn machine() -> Option<TestRedis> {
        if std::net::TcpStream::connect(MACHINE_REDIS_ADDR).is_err() {
            assert!(
                std::env::var("LLMUX_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "LLMUX_REQUIRE_SERVICES=1 but no Redis on 127.0.0.1:6379"
            );
            eprintln!("skipped: needs Redis on 127.0.0.1:6379");
            return None;
        }
        Some(TestRedis::Machine {
            prefix: format!("llmux-test-{:016x}", rand::random::<u64>()),
            relay: None,
        })
    }

    /// The machine's Redis through a [`TcpGate`] (whose answers a test can hold back).
    async fn machine_slowed() -> Option<TestRedis> {
        let mut redis = TestRedis::machine()?;
        if let TestRedis::Machine { relay, .. } = &mut redis {
            *relay = Some(TcpGate::start(MACHINE_REDIS_ADDR.parse().unwrap()).await);
        }
        Some(redis)
    }

    /// Until `ok` holds of how many holds this cluster's nodes have in Redis (read directly,
    /// not through a relay), for at most 5 s.
    async fn until_holds(&self, ok: impl Fn(i64) -> bool) {
        let mut conn = redis::Client::open(MACHINE_REDIS)
            .and_then(|c| c.get_connection())
            .unwrap();
        let pattern = format!("{}:holds:*", self.prefix());
        for _ in 0..500 {
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn).unwrap();
            let mut n = 0;
            for k in keys {
                n += redis::cmd("HLEN").arg(k).query::<i64>(&mut conn).unwrap();
            }
            if ok(n) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the holds in Redis did not come to what was expected within 5 s");
    }

    /// The relay of [`TestRedis::machine_slowed`].
    fn relay(&self) -> &TcpGate {
        match self {
            TestRedis::Machine {
                relay: Some(relay), ..
            } => relay,
            _ => panic!("not reached through a relay"),
        }
    }

    fn own() -> Option<TestRedis> {
        RedisServer::start().map(TestRedis::Own)
    }

    fn url(&self) -> String {
        match self {
            TestRedis::Machine { relay: None, .. } => MACHINE_REDIS.to_string(),
            TestRedis::Machine {
                relay: Some(relay), ..
            } => format!("redis://127.0.0.1:{}", relay.port),
            TestRedis::Own(r) => r.url(),
        }
    }

    fn prefix(&self) -> &str {
        match self {
            TestRedis::Machine { prefix, .. } => prefix,
            TestRedis::Own(_) => "llmux",
        }
    }

    /// The `[cluster]` section naming it.
    fn section(&self) -> String {
        format!(
            "[cluster]\nredis = \"{}\"\nprefix = \"{}\"\n",
            self.url(),
            self.prefix()
        )
    }

    /// The test's own server (to stop or restart it).
    fn server(&mut self) -> &mut RedisServer {
        match self {
            TestRedis::Own(r) => r,
            TestRedis::Machine { .. } => panic!("the machine's Redis is not the test's to restart"),
        }
    }

    /// A connection as a node sees the cluster (to read what Redis holds).
    async fn observe(&self) -> llmux::cluster::Cluster {
        llmux::cluster::Cluster::connect(&self.url(), self.prefix(), "test-observer")
            .await
            .unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let TestRedis::Machine { prefix, .. } = self else {
            return;
        };
        let Ok(mut conn) = redis::Client::open(MACHINE_REDIS).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// Nodes sharing one database and one Redis; the database goes with them.
struct Nodes {
    nodes: Vec<Gateway>,
    redis: TestRedis,
    database: String,
    _sim: llmux_sim::SimHandle,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.nodes.clear();
        drop_postgres_database(&self.database);
    }
}

/// The configuration after `[server]`: the simulated provider serving [`MODEL`] (its
/// upstream model name, `upstream`, says how the simulator behaves) and the test's
/// (`extra`, with more endpoints or sections), and metering that writes every 50 ms.
fn rest(sim: &llmux_sim::SimHandle, upstream: &str, extra: &str) -> String {
    format!(
        "[metering]\nflush_interval_ms = 50\n\n{extra}\n{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "simco", upstream, "0", P, "")
    )
}

/// `n` nodes on the machine's PostgreSQL and Redis, or None (the test says why it skips)
/// without them.
async fn cluster(n: usize, upstream: &str, extra: &str) -> Option<Nodes> {
    cluster_on(TestRedis::machine()?, n, upstream, extra).await
}

async fn cluster_on(redis: TestRedis, n: usize, upstream: &str, extra: &str) -> Option<Nodes> {
    let server = postgres_server()?;
    let sim = sim().await;
    let database = create_postgres_database(&server).await;
    let extra = format!("{}\n{extra}", redis.section());
    let rest = rest(&sim, upstream, &extra);
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Gateway::start_on(&database, "", &rest, &[]).await);
    }
    Some(Nodes {
        nodes,
        redis,
        database,
        _sim: sim,
    })
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Send `request` to `gw` until it answers `status`; how long that took.
async fn until_status(gw: &Gateway, key: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = gw
            .post("/api/v1/chat/completions", key, &echo_request())
            .await;
        if r.status().as_u16() == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {} after {within:?}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_hold_credits_limits_and_rate_limits_exactly() {
    // A free endpoint too, for the free-model limit (20 requests a minute per key).
    let free = endpoint("z-ai/glm-4.6", "simco", "m", "0", "0", "");
    let Some(c) = cluster(3, "m", &free).await else {
        return;
    };
    let nodes = &c.nodes;
    let gw = &nodes[0];

    // Credits for N requests, 10N fired across three nodes: exactly N succeed.
    let n = 9;
    let credits = one_request_cost() * rust_decimal::Decimal::from(n);
    let key = gw.create_key("n", Some(&credits.to_string()));
    let statuses = burst(nodes, &key.key, 10 * n).await;
    assert_eq!(count(&statuses, 200), n, "exactly N succeed: {statuses:?}");
    assert_eq!(count(&statuses, 402), 9 * n, "{statuses:?}");
    let store = llmux::storage::Store::open(&c.database).await.unwrap();
    let settled = async || {
        for _ in 0..100 {
            let audit: Value =
                serde_json::from_slice(&gw.cli(&["ledger", "verify", "--json"]).stdout).unwrap();
            if audit["charged_records"] == n as u64 {
                return audit;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the charges were not written");
    };
    let audit = settled().await;
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(store.balance(&key.account).await.unwrap().0, 0);
    let shared = c.redis.observe().await;
    assert_eq!(
        shared.available(&key.account).await.unwrap(),
        Some(llmux::money::Money::ZERO),
        "the cluster's credits: exact, never negative"
    );

    // A top-up made with the CLI is usable on every node within a second (the nodes read the
    // ledger every 250 ms; the bound leaves room for a busy test machine).
    let out = nodes[1].cli(&[
        "credits",
        "add",
        &key.account,
        &one_request_cost().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = until_status(&nodes[2], &key.key, 200, Duration::from_millis(1500)).await;
    eprintln!("top-up usable on another node after {took:?}");
    let statuses = burst(nodes, &key.key, 6).await;
    assert_eq!(
        count(&statuses, 402),
        6,
        "the top-up bought exactly one request"
    );

    // A key disabled on one node stops working on all of them within a second.
    let big = gw.create_key("big", Some("20000"));
    for node in nodes {
        let r = node
            .post("/api/v1/chat/completions", &big.key, &echo_request())
            .await;
        assert_eq!(r.status(), 200);
    }
    // Amounts beyond 2^53 picodollars ($9,007) stay exact in Redis.
    let mut expected = llmux::money::Money::parse_usd("20000").unwrap();
    for _ in 0..3 {
        expected = expected
            .checked_sub(llmux::money::Money::from_usd(one_request_cost()).unwrap())
            .unwrap();
    }
    let mut available = None;
    for _ in 0..100 {
        available = shared.available(&big.account).await.unwrap();
        if available == Some(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(available, Some(expected));
    let out = gw.cli(&["keys", "disable", &big.hash]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in nodes {
        let r = node
            .post("/api/v1/chat/completions", &big.key, &echo_request())
            .await;
        if r.status() == 200 {
            until_status(node, &big.key, 401, Duration::from_millis(1500)).await;
        } else {
            assert_eq!(r.status(), 401);
        }
    }

    // A key limit worth N requests admits exactly N across the nodes.
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
    let limited: Value = serde_json::from_slice(&out.stdout).unwrap();
    let limited = limited["key"].as_str().unwrap();
    // First three requests that hold twice what they cost (max_tokens 2K, K answered): the
    // settlement brings the key's spending down to what they cost.
    for node in nodes {
        let mut body = echo_request();
        body["max_tokens"] = (2 * K).into();
        let r = node.post("/api/v1/chat/completions", limited, &body).await;
        assert_eq!(r.status(), 200);
    }
    // Then N − 3 more fit, exactly.
    let statuses = burst(nodes, limited, 10 * n).await;
    assert_eq!(count(&statuses, 200), n - 3, "{statuses:?}");
    assert_eq!(count(&statuses, 403), 10 * n - (n - 3), "{statuses:?}");

    // R requests a minute admit R in total, not 3R.
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
    let rl: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses = burst(nodes, rl["key"].as_str().unwrap(), 10 * r_limit).await;
    assert_eq!(count(&statuses, 200), r_limit, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 9 * r_limit, "{statuses:?}");

    // The free-model limit is per key for all nodes too: 20 a minute, not 60.
    let free_key = gw.create_key("free", None);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let gw = &nodes[i % 3];
        let (http, url, k) = (
            gw.http.clone(),
            gw.url("/api/v1/chat/completions"),
            free_key.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = json!({"model": "z-ai/glm-4.6:free", "max_tokens": K,
                              "messages": [{"role": "user", "content": "echo: free"}]});
            let r = http
                .post(url)
                .bearer_auth(k)
                .json(&body)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(count(&statuses, 200), 20, "{statuses:?}");
    assert_eq!(count(&statuses, 429), 40, "{statuses:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_and_a_restarted_redis_lose_no_record() {
    // Its own Redis, restarted mid-load.
    let Some(redis) = TestRedis::own() else {
        return;
    };
    let Some(mut c) = cluster_on(redis, 3, "m+tps=400", "").await else {
        return;
    };
    let key = c.nodes[0].create_key("load", Some("5"));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..18 {
        let gw = &c.nodes[i % 3];
        let (http, url, k, stop) = (
            gw.http.clone(),
            gw.url("/api/v1/chat/completions"),
            key.key.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Generation ids of the requests answered in full, and statuses seen.
            let mut answered = Vec::new();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let mut body = echo_request();
                body["stream"] = (i % 2 == 0).into();
                let Ok(r) = http.post(&url).bearer_auth(&k).json(&body).send().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let status = r.status().as_u16();
                statuses.push(status);
                let id = r
                    .headers()
                    .get("x-generation-id")
                    .map(|v| v.to_str().unwrap().to_string());
                let Ok(text) = r.text().await else { continue };
                if status == 200 && (i % 2 == 1 || text.contains("data: [DONE]")) {
                    answered.push(id.expect("a generation id"));
                }
                if status != 200 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (answered, statuses)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.nodes[0].kill9();
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.redis.server().restart();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    let mut statuses = Vec::new();
    for t in tasks {
        let (a, s) = t.await.unwrap();
        answered.extend(a);
        statuses.extend(s);
    }
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "only successes, and 503 while Redis was away: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    eprintln!(
        "answered in full: {}; 200: {}, 503 (Redis away): {}",
        answered.len(),
        count(&statuses, 200),
        count(&statuses, 503)
    );
    assert!(answered.len() > 50, "load ran: {}", answered.len());
    let unique: HashSet<&String> = answered.iter().collect();
    assert_eq!(unique.len(), answered.len());

    // The killed node comes back and writes what its spool kept; the others stop gracefully.
    c.nodes[0].restart().await;
    c.nodes[0].terminate();
    c.nodes[1].terminate();
    c.nodes[2].terminate();
    let store = llmux::storage::Store::open(&c.database).await.unwrap();
    let mut missing = Vec::new();
    for id in &answered {
        if store.generation(id).await.unwrap().is_none() {
            missing.push(id);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered generations have no record: {missing:?}",
        missing.len(),
        answered.len()
    );
    let audit: Value =
        serde_json::from_slice(&c.nodes[0].cli(&["ledger", "verify", "--json"]).stdout).unwrap();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(
        audit["records"].as_u64().unwrap(),
        store.generation_count().await.unwrap() as u64
    );
    assert!(audit["records"].as_u64().unwrap() >= answered.len() as u64);
    let (credited, spent) = store.credit_totals(&key.account).await.unwrap();
    assert_eq!(
        store.balance(&key.account).await.unwrap(),
        credited.checked_sub(spent).unwrap()
    );
    store.close().await;
}

/// The same requests (two models, two apps, streamed and not) sent to `nodes` in turn.
async fn traffic(nodes: &[Gateway], key: &str) {
    for i in 0..24usize {
        let gw = &nodes[i % nodes.len()];
        let model = if i % 3 == 0 { "z-ai/glm-4.6" } else { MODEL };
        let words = ["a"; 9][..1 + i % 9].join(" ");
        let body = json!({"model": model, "stream": i % 2 == 0, "max_tokens": 16,
                          "messages": [{"role": "user", "content": format!("echo: {words}")}]});
        let app = if i % 4 == 0 {
            "https://one.example"
        } else {
            "https://two.example"
        };
        let r = gw
            .http
            .post(gw.url("/api/v1/chat/completions"))
            .bearer_auth(key)
            .header("HTTP-Referer", app)
            .header("X-Title", app.trim_start_matches("https://"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
    }
}

async fn wait_for_records(database: &str, n: i64) {
    let store = llmux::storage::Store::open(database).await.unwrap();
    for _ in 0..200 {
        if store.generation_count().await.unwrap() == n {
            store.close().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("records were not written");
}

/// A JSON answer without the time it was made (`as_of`, `generated_at`, anywhere).
fn without_times(mut v: Value) -> String {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                o.remove("as_of");
                o.remove("generated_at");
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v.to_string()
}

/// What rankings and activity say about the traffic (ids and times of day left out).
async fn figures(gw: &Gateway, key: &Key) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for by in ["model", "author", "origin", "provider", "app"] {
        let path = format!("/api/v1/rankings?period=day&by={by}&weeks=1");
        let v: Value = gw.get(&path, "").await.json().await.unwrap();
        out.push((path, without_times(v)));
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for path in [
        format!("/api/v1/datasets/rankings-daily?start_date={today}&end_date={today}"),
        format!("/api/v1/datasets/app-rankings?start_date={today}&end_date={today}"),
    ] {
        let v: Value = gw.get(&path, "").await.json().await.unwrap();
        out.push((path, without_times(v)));
    }
    for by in ["model", "key"] {
        let args = [
            "activity", "--key", &key.key, "--range", "1d", "--by", by, "--csv",
        ];
        let csv = String::from_utf8(gw.cli(&args).stdout).unwrap();
        // The key's own name and hash differ between the installations.
        let csv = csv.replace(&key.hash, "KEY");
        out.push((args.join(" "), csv));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn rankings_and_activity_on_a_cluster_equal_one_nodes() {
    // No rankings cache: every answer counts every record written.
    let extra = format!(
        "[rankings]\ncache_secs = 0\n\n{}",
        endpoint("z-ai/glm-4.6", "simco", "m", "0.5", "1.5", "")
    );
    let Some(c) = cluster(3, "m", &extra).await else {
        return;
    };
    let sim = sim().await;
    let single = Gateway::start("", &rest(&sim, "m", &extra)).await;
    let on_cluster = c.nodes[0].create_key("same", Some("10"));
    let on_single = single.create_key("same", Some("10"));
    traffic(&c.nodes, &on_cluster.key).await;
    traffic(std::slice::from_ref(&single), &on_single.key).await;
    wait_for_records(&c.database, 24).await;
    wait_for_records(&single.db_url(), 24).await;

    let a = figures(&c.nodes[1], &on_cluster).await;
    let b = figures(&single, &on_single).await;
    for ((what, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x, y, "{what}: the cluster and one node differ");
    }
    // And they say something: both models, both apps, the key's requests.
    assert!(a[0].1.contains("z-ai/glm-4.6"), "{}", a[0].1);
    assert!(
        a[4].1.contains("one.example") && a[4].1.contains("two.example"),
        "{}",
        a[4].1
    );
    assert!(a[7].1.lines().count() > 2, "{}", a[7].1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaker_opened_by_one_node_is_open_on_all() {
    // It opens after two failures in a row (before routing has learnt to avoid the endpoint).
    failing_endpoint_avoided_by_all(2, 2.0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_seen_by_one_node_make_the_endpoint_unstable_on_all() {
    // The breaker stays closed; the failures alone (shared counts) make it go last.
    failing_endpoint_avoided_by_all(100, 0.0).await;
}

/// The cheap endpoint always fails (503); a dearer one of another provider works. Node 0 meets
/// the failures; node 1, which never sends the endpoint a request, must avoid it too, and see
/// its breaker in `circuit` (0 closed, 2 open).
async fn failing_endpoint_avoided_by_all(breaker_failures: u32, circuit_state: f64) {
    let sim = sim().await;
    let extra = format!(
        "[router]\nbreaker_failures = {breaker_failures}\n\n{}{}",
        provider("backup", &format!("{}/v1", sim.base_url()), ""),
        endpoint(MODEL, "backup", "m", "0", "9", "")
    );
    let Some(c) = cluster(2, "bad+fail=503", &extra).await else {
        return;
    };
    let key = c.nodes[0].create_key("h", None);
    let metrics = async |gw: &Gateway| gw.get_public_text("/metrics").await;
    let circuit = format!("llmux_endpoint_circuit_state{{provider=\"simco\",model=\"{MODEL}\"}}");
    let stable = format!("llmux_endpoint_stable{{provider=\"simco\",model=\"{MODEL}\"}}");
    let tried = "llmux_upstream_attempts_total{provider=\"simco\",outcome=\"error\"}";
    // Node 0 tries the failing endpoint until its breaker opens (every request still served).
    for _ in 0..8 {
        let r = c.nodes[0]
            .post("/api/v1/chat/completions", &key.key, &echo_request())
            .await;
        assert_eq!(r.status(), 200);
    }
    let seen = metrics(&c.nodes[0]).await;
    assert_eq!(
        metric(&seen, &circuit),
        Some(circuit_state),
        "node 0:\n{seen}"
    );
    assert_eq!(metric(&seen, &stable), Some(0.0), "{seen}");
    // Node 1, which never sent it a request, learns within a second or so...
    let start = Instant::now();
    loop {
        let text = metrics(&c.nodes[1]).await;
        if metric(&text, &circuit) == Some(circuit_state) && metric(&text, &stable) == Some(0.0) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "node 1:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and goes straight to the working provider.
    for _ in 0..6 {
        let r = c.nodes[1]
            .post("/api/v1/chat/completions", &key.key, &echo_request())
            .await;
        assert_eq!(r.status(), 200);
    }
    let text = metrics(&c.nodes[1]).await;
    assert_eq!(metric(&text, tried), None, "node 1 never tried it:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_rides_out_postgres_and_redis_outages() {
    let Some(server) = postgres_server() else {
        return;
    };
    // Its own Redis, stopped mid-test.
    let Some(redis) = TestRedis::own() else {
        return;
    };
    let sim = sim().await;
    let database = create_postgres_database(&server).await;
    // The node reaches PostgreSQL through a gate the test can cut.
    let (scheme_user, host) = server.rsplit_once('@').unwrap_or(("postgres://", &server));
    let host = host.trim_start_matches("postgres://");
    let target = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let gate = TcpGate::start(target).await;
    let name = database.rsplit('/').next().unwrap();
    let sep = if scheme_user.ends_with("//") { "" } else { "@" };
    let gated = format!("{scheme_user}{sep}127.0.0.1:{}/{name}", gate.port);
    let extra = redis.section();
    let node = Gateway::start_on(&gated, "", &rest(&sim, "m", &extra), &[]).await;
    let mut c = Nodes {
        nodes: vec![node],
        redis,
        database,
        _sim: sim,
    };
    let gw = &c.nodes[0];
    let key = gw.create_key("outage", Some("1"));
    // A postpaid account's key without limits: nothing to decide for all nodes.
    let postpaid = gw.create_key("postpaid", None);
    let mut ids = Vec::new();
    let mut spent = rust_decimal::Decimal::ZERO;
    let send = async |stream: bool| -> reqwest::Response {
        let mut body = echo_request();
        body["stream"] = stream.into();
        gw.post("/api/v1/chat/completions", &key.key, &body).await
    };
    let answered = async |r: reqwest::Response, ids: &mut Vec<String>| {
        assert_eq!(r.status(), 200);
        ids.push(generation_id(&r));
        raw_number(&r.text().await.unwrap(), "cost")
    };
    for i in 0..4 {
        let r = send(i % 2 == 0).await;
        spent += dec(&answered(r, &mut ids).await);
    }

    let r = gw
        .post("/api/v1/chat/completions", &postpaid.key, &echo_request())
        .await;
    assert_eq!(r.status(), 200);
    ids.push(generation_id(&r));
    let _ = r.bytes().await;

    // PostgreSQL away: the node still answers (keys, credits and limits need no database);
    // the records wait in its queue and spool.
    gate.cut();
    for i in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(5), send(i % 2 == 0))
            .await
            .expect("answered without waiting for PostgreSQL");
        spent += dec(&answered(r, &mut ids).await);
    }

    // Redis away too: billing fails closed, with a clear error and a time to retry.
    c.redis.server().stop();
    let r = send(false).await;
    // Refused requests have records too (status and error, no cost), like OpenRouter's.
    let mut refused = 1;
    assert_eq!(r.headers()["retry-after"], "1");
    let msg = error_message(r, 503).await;
    assert!(msg.contains("Redis"), "{msg}");
    let r = gw
        .post("/api/v1/chat/completions", &postpaid.key, &echo_request())
        .await;
    assert_eq!(
        r.status(),
        200,
        "a key with nothing shared to check needs no Redis"
    );
    ids.push(generation_id(&r));
    let _ = r.bytes().await;

    // Both back (Redis empty): the account's credits are rebuilt from the ledger once the
    // records are in it, and nothing was lost.
    c.redis.server().resume();
    gate.restore();
    let start = Instant::now();
    loop {
        let r = send(false).await;
        if r.status() == 200 {
            spent += dec(&answered(r, &mut ids).await);
            break;
        }
        assert_eq!(r.status(), 503);
        refused += 1;
        assert!(start.elapsed() < Duration::from_secs(15), "still 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let store = llmux::storage::Store::open(&c.database).await.unwrap();
    for _ in 0..200 {
        if store.generation_count().await.unwrap() == (ids.len() + refused) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &ids {
        assert!(store.generation(id).await.unwrap().is_some(), "{id} kept");
    }
    assert_eq!(
        store.balance(&key.account).await.unwrap().to_usd(),
        dec("1") - spent
    );
    let audit: Value =
        serde_json::from_slice(&gw.cli(&["ledger", "verify", "--json"]).stdout).unwrap();
    assert_eq!(audit["clean"], true, "{audit}");
    assert_eq!(audit["records"], ids.len() + refused);
    assert_eq!(audit["charged_records"], ids.len());
    assert!(
        gw.log().contains("generation records failed, retrying"),
        "the node did see PostgreSQL away: {}",
        gw.log()
    );
    store.close().await;
    drop(gate);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_nodes_holds_are_given_back() {
    // Slow streams: 200 words at 40 tokens a second.
    let Some(mut c) = cluster(2, "m+tps=40", "").await else {
        return;
    };
    let key = c.nodes[0].create_key("held", Some("1"));
    let words = ["w"; 200].join(" ");
    let body = json!({"model": MODEL, "stream": true, "max_tokens": 1000,
                      "messages": [{"role": "user", "content": format!("echo: {words}")}]});
    let mut streams = Vec::new();
    for _ in 0..4 {
        let r = c.nodes[0]
            .post("/api/v1/chat/completions", &key.key, &body)
            .await;
        assert_eq!(r.status(), 200);
        streams.push(r);
    }
    // One request finishes on the other node meanwhile.
    let r = c.nodes[1]
        .post("/api/v1/chat/completions", &key.key, &echo_request())
        .await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let shared = c.redis.observe().await;
    let store = llmux::storage::Store::open(&c.database).await.unwrap();
    let held = shared.available(&key.account).await.unwrap().unwrap();
    let balance = store.balance(&key.account).await.unwrap();
    assert!(held < balance, "four holds of $0.002: {held} < {balance}");

    // The node dies with its four requests in flight: nobody will settle them.
    c.nodes[0].kill9();
    drop(streams);
    let start = Instant::now();
    loop {
        let available = shared.available(&key.account).await.unwrap().unwrap();
        let balance = store.balance(&key.account).await.unwrap();
        if available == balance {
            break;
        }
        assert!(
            start.elapsed() < llmux::cluster::ALIVE_FOR + Duration::from_secs(6),
            "the holds were not given back: {available} available, {balance} in the ledger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("holds given back after {:?}", start.elapsed());
    // And the node left serves on.
    let r = c.nodes[1]
        .post("/api/v1/chat/completions", &key.key, &echo_request())
        .await;
    assert_eq!(r.status(), 200);
    store.close().await;
}

/// Send a request with `key` once no hold is pending in Redis, and hand it back (still
/// running) once Redis has taken its hold.
async fn send_once_held(
    redis: &TestRedis,
    url: String,
    key: String,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    redis.until_holds(|n| n == 0).await;
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(url)
            .bearer_auth(key)
            .json(&echo_request())
            .send(),
    );
    redis.until_holds(|n| n > 0).await;
    request
}

/// Redis takes a hold whether or not its answer is awaited: a request that is gone by the time
/// the answer comes (its client left, the answer came after the node's 2 s response timeout,
/// or the connection dropped first) must not leave it held until the node stops.
#[tokio::test(flavor = "multi_thread")]
async fn a_hold_whose_request_is_gone_is_given_back() {
    let Some(redis) = TestRedis::machine_slowed().await else {
        return;
    };
    let Some(c) = cluster_on(redis, 1, "m", "").await else {
        return;
    };
    let relay = c.redis.relay();
    let gw = &c.nodes[0];
    // An account (one per key, one per case) with credits for two requests, the first
    // answered: one request's worth is left, which a hold left behind would take.
    let account = |name: &'static str| async move {
        let key = gw.create_key(
            name,
            Some(&(one_request_cost() * rust_decimal::Decimal::TWO).to_string()),
        );
        let r = gw
            .post("/api/v1/chat/completions", &key.key, &echo_request())
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        key
    };

    // A request sent while Redis's answers are held back; resolves once Redis has taken its
    // hold (the answer is then on its way, held).
    let url = gw.url("/api/v1/chat/completions");
    let send_held = |key: &str| send_once_held(&c.redis, url.clone(), key.to_string());

    // The client leaves while Redis's answer is on its way.
    let leaver = account("leaver").await;
    relay.delay(Duration::from_millis(1500));
    send_held(&leaver.key).await.abort();
    relay.delay(Duration::ZERO);
    let took = until_status(gw, &leaver.key, 200, Duration::from_secs(10)).await;
    eprintln!("after a client that left: a request's worth free again after {took:?}");

    // Redis answers after the node stopped waiting. (The settlement of the request just
    // answered is usually on its way then too, and unanswered: retried, it must not be
    // charged twice.)
    let late = account("late").await;
    relay.delay(Duration::from_millis(3000));
    let r = gw
        .post("/api/v1/chat/completions", &late.key, &echo_request())
        .await;
    assert_eq!(r.status(), 503, "no answer from Redis within 2 s");
    relay.delay(Duration::ZERO);
    let took = until_status(gw, &late.key, 200, Duration::from_secs(10)).await;
    eprintln!("after an answer too late: a request's worth free again after {took:?}");

    // The connection drops after Redis took the hold, before its answer came.
    let cut = account("cut").await;
    relay.delay(Duration::from_millis(1500));
    let request = send_held(&cut.key).await;
    relay.cut();
    relay.restore();
    relay.delay(Duration::ZERO);
    let r = request.await.unwrap().unwrap();
    assert_eq!(r.status(), 503, "Redis's connection dropped");
    let took = until_status(gw, &cut.key, 200, Duration::from_secs(10)).await;
    eprintln!("after a connection dropped: a request's worth free again after {took:?}");

    for key in [leaver, late, cut] {
        let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
        assert_eq!(
            dec(k["data"]["account"]["balance"].as_str().unwrap()),
            rust_decimal::Decimal::ZERO,
            "two requests answered and billed, the one that was gone nothing"
        );
    }
}

/// A sync that cannot finish (here, Redis is down, so the top-up cannot reach the cluster's
/// credits) must not count the ledger entries it read again at the next: the node reads the
/// ledger every 250 ms.
#[tokio::test(flavor = "multi_thread")]
async fn a_top_up_seen_while_redis_is_down_is_counted_once() {
    let Some(redis) = TestRedis::own() else {
        return;
    };
    let Some(mut c) = cluster_on(redis, 1, "m", "").await else {
        return;
    };
    let gw = &c.nodes[0];
    let key = gw.create_key("topped", Some("1"));
    let r = gw
        .post("/api/v1/chat/completions", &key.key, &echo_request())
        .await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let balance = || async {
        let k: Value = gw.get("/api/v1/key", &key.key).await.json().await.unwrap();
        dec(k["data"]["account"]["balance"].as_str().unwrap())
    };
    let before = balance().await;

    c.redis.server().stop();
    let out = gw.cli(&["credits", "add", &key.account, "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Six of the node's syncs or more, each unable to reach Redis.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(balance().await, before + dec("2"), "the top-up, once");

    c.redis.server().resume();
    until_status(gw, &key.key, 200, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        balance().await,
        before + dec("2") - one_request_cost(),
        "the top-up once, and the request served after Redis came back"
    );
}

/// A settlement that cannot reach Redis for longer than its retries used to last (about
/// 17 s) lands once Redis is back: what Redis counts as available then equals the ledger's
/// balance. Meanwhile another node, which reaches Redis, takes the cut-off node for dead and
/// gives its hold back whole; the settlement, when it lands, still charges the cost.
#[tokio::test(flavor = "multi_thread")]
async fn a_settlement_waits_out_a_long_redis_outage() {
    let Some(redis) = TestRedis::machine_slowed().await else {
        return;
    };
    // Five words at ten a second: a stream of half a second.
    let Some(c) = cluster_on(redis, 1, "m+tps=10", "").await else {
        return;
    };
    let relay = c.redis.relay();
    let gw = &c.nodes[0];
    let direct = format!(
        "[cluster]\nredis = \"{MACHINE_REDIS}\"\nprefix = \"{}\"\n",
        c.redis.prefix()
    );
    let _other = Gateway::start_on(&c.database, "", &rest(&c._sim, "m", &direct), &[]).await;
    let key = gw.create_key("patient", Some("1"));
    // A worst case of 50 tokens for an answer of 5: held, 45 tokens' worth more than charged.
    let body = json!({"model": MODEL, "stream": true, "max_tokens": 50,
                      "messages": [{"role": "user", "content": "echo: a b c d e"}]});
    let mut r = gw.post("/api/v1/chat/completions", &key.key, &body).await;
    assert_eq!(r.status(), 200);
    r.chunk().await.unwrap().expect("the stream has begun");
    // Redis goes away from the first node while its stream finishes, for 25 s.
    relay.cut();
    let rest = String::from_utf8_lossy(&r.bytes().await.unwrap()).into_owned();
    assert!(rest.contains("[DONE]"), "{rest}");
    tokio::time::sleep(Duration::from_secs(25)).await;
    relay.restore();

    let shared = c.redis.observe().await;
    let store = llmux::storage::Store::open(&c.database).await.unwrap();
    let start = Instant::now();
    loop {
        let available = shared.available(&key.account).await.unwrap().unwrap();
        let balance = store.balance(&key.account).await.unwrap();
        if available == balance && balance < llmux::money::Money::parse_usd("1").unwrap() {
            eprintln!("settled {:?} after Redis came back", start.elapsed());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{available} available in Redis, {balance} in the ledger"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.close().await;
}
