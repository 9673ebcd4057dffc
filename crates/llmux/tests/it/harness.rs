//! Test harness: the real `llmux` binary on a free port with a temporary config and SQLite
//! database, simulated providers in-process, and an HTTP client.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use llmux_sim::{SimConfig, SimHandle};
use parking_lot::Mutex;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_llmux");

/// A simulated provider with request recording on.
pub async fn sim() -> SimHandle {
    sim_with(SimConfig {
        record: true,
        ..Default::default()
    })
    .await
}

pub async fn sim_with(config: SimConfig) -> SimHandle {
    llmux_sim::spawn("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// `[[providers]]` for an OpenAI-compatible upstream.
pub fn provider(slug: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nslug = \"{slug}\"\nname = \"{slug} provider\"\napi = \"openai\"\nbase_url = \"{base_url}\"\n{extra}\n"
    )
}

/// `[[providers]]` speaking `api` (`openai`, `anthropic`, `gemini`).
pub fn provider_api(slug: &str, api: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nslug = \"{slug}\"\nname = \"{slug} provider\"\napi = \"{api}\"\nbase_url = \"{base_url}\"\n{extra}\n"
    )
}

/// `[[endpoints]]` with prices in USD per million tokens.
pub fn endpoint(
    model: &str,
    provider: &str,
    upstream: &str,
    prompt: &str,
    completion: &str,
    extra: &str,
) -> String {
    format!(
        "[[endpoints]]\nmodel = \"{model}\"\nprovider = \"{provider}\"\nupstream_model = \"{upstream}\"\n\
         pricing = {{ prompt = \"{prompt}\", completion = \"{completion}\" }}\n{extra}\n"
    )
}

pub struct Key {
    pub key: String,
    pub hash: String,
    pub account: String,
}

pub struct Gateway {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The database URL in the configuration (SQLite in the test's directory, or a fresh
    /// PostgreSQL database with `LLMUX_TEST_POSTGRES`).
    database: String,
    /// Drop the PostgreSQL database with the gateway (it made it; cluster nodes share one).
    owns_database: bool,
    child: Child,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

/// Start `llmux serve` and wait for the line naming its address.
fn spawn_server(
    dir: &std::path::Path,
    config: &std::path::Path,
    env: &[(String, String)],
) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("llmux.log"))
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env("LLMUX_LOG", "warn")
        .env_remove("LLMUX_CONFIG")
        .env_remove("LLMUX_DATABASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("llmux listening on ") {
                    return (child, url.trim().to_string());
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join("llmux.log")).unwrap_or_default();
                panic!("llmux did not start:\n{log}");
            }
        }
    }
}

impl Gateway {
    /// Start `llmux serve` with `server_extra` added to `[server]` and `rest` (providers,
    /// endpoints, ...) after it.
    pub async fn start(server_extra: &str, rest: &str) -> Gateway {
        Self::start_with_env(server_extra, rest, &[]).await
    }

    /// Start on SQLite even when the suite runs on PostgreSQL.
    pub async fn start_sqlite(server_extra: &str, rest: &str) -> Gateway {
        Self::start_on("sqlite://llmux.db", server_extra, rest, &[]).await
    }

    pub async fn start_with_env(server_extra: &str, rest: &str, env: &[(&str, &str)]) -> Gateway {
        let database = test_database().await;
        let mut gw = Self::start_on(&database, server_extra, rest, env).await;
        gw.owns_database = true;
        gw
    }

    /// Start on `database` (`sqlite://llmux.db` is the test's own directory).
    pub async fn start_on(
        database: &str,
        server_extra: &str,
        rest: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let database = database.to_string();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("llmux.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{database}\"\ndata_dir = \"data\"\n{server_extra}\n\n{rest}"
        );
        std::fs::write(&config, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, base) = spawn_server(dir.path(), &config, &env);
        Gateway {
            base,
            dir,
            config,
            database,
            owns_database: false,
            child,
            env,
            http: {
                llmux::init_tls();
                reqwest::Client::new()
            },
        }
    }

    /// The rows `sql` selects from the gateway's database, once it selects any (records are
    /// written a flush interval after their request); none after 10 s.
    pub async fn rows_once_written<T>(&self, sql: &'static str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect(&self.db_url()).await.unwrap();
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = sqlx::query_as::<_, T>(sql).fetch_all(&db).await.unwrap();
            if !rows.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.close().await;
        rows
    }

    /// Set an environment variable for the next `restart` and for `cli`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Kill the server without warning (SIGKILL).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the server again on the same configuration and database (a new port).
    pub async fn restart(&mut self) {
        let (child, base) = spawn_server(self.dir.path(), &self.config, &self.env);
        self.child = child;
        self.base = base;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn db_url(&self) -> String {
        match self.database.strip_prefix("sqlite://") {
            Some(file) => format!("sqlite://{}", self.dir.path().join(file).display()),
            None => self.database.clone(),
        }
    }

    /// Run the CLI against this gateway's configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("LLMUX_CONFIG")
            .env_remove("LLMUX_DATABASE");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env("LLMUX_LOG", "warn").output().unwrap()
    }

    pub fn create_key(&self, name: &str, credits: Option<&str>) -> Key {
        self.create_key_with(name, credits, &[])
    }

    /// A management key (`llmux keys create --management`), on a new account.
    pub fn create_management_key(&self, name: &str, credits: Option<&str>) -> Key {
        self.create_key_with(name, credits, &["--management"])
    }

    fn create_key_with(&self, name: &str, credits: Option<&str>, extra: &[&str]) -> Key {
        let mut args = vec!["keys", "create", "--name", name, "--json"];
        args.extend_from_slice(extra);
        if let Some(c) = credits {
            args.extend(["--credits", c]);
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        Key {
            key: v["key"].as_str().unwrap().to_string(),
            hash: v["hash"].as_str().unwrap().to_string(),
            account: v["account"].as_str().unwrap().to_string(),
        }
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// `GET /api/v1/generation` for `id`, waiting up to five seconds for the record (of a
    /// stream whose client left, written once the pipeline notices); `Value::Null` if none.
    pub async fn wait_for_generation(&self, id: &str, key: &str) -> Value {
        for _ in 0..50 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let r = self.get(&format!("/api/v1/generation?id={id}"), key).await;
            if r.status() == 200 {
                return r.json().await.unwrap();
            }
        }
        Value::Null
    }

    /// GET a public path (no key); the body as JSON.
    pub async fn get_public_json(&self, path: &str) -> Value {
        self.get_public(path).await.json().await.unwrap()
    }

    /// GET a public path (no key); the body as text (e.g. `/metrics`).
    pub async fn get_public_text(&self, path: &str) -> String {
        self.get_public(path).await.text().await.unwrap()
    }

    /// GET a public path (no key), for its status, headers and body.
    pub async fn get_public(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("llmux.log")).unwrap_or_default()
    }

    /// Stop with SIGTERM (a graceful shutdown) and wait.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_database && self.database.starts_with("postgres") {
            drop_postgres_database(&self.database);
        }
    }
}

/// The PostgreSQL server tests that need one use: `LLMUX_TEST_POSTGRES`, else the local
/// default when something listens there. None (the test says it skips) unless
/// `LLMUX_REQUIRE_SERVICES=1`, where a missing server fails the test.
pub fn postgres_server() -> Option<String> {
    let set = std::env::var("LLMUX_TEST_POSTGRES").ok();
    let reachable = set.is_some() || std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
    if !reachable {
        assert!(
            std::env::var("LLMUX_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "LLMUX_REQUIRE_SERVICES=1 but no PostgreSQL on 127.0.0.1:5432"
        );
        eprintln!("skipped: needs PostgreSQL (127.0.0.1:5432 or LLMUX_TEST_POSTGRES)");
        return None;
    }
    let server = set.unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".to_string());
    Some(server.trim_end_matches('/').to_string())
}

/// A Redis server of a test's own (`redis-server` on a free port, keeping nothing on disk),
/// which the test may restart; killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    /// None (the test says it skips) when `redis-server` is not installed, unless
    /// `LLMUX_REQUIRE_SERVICES=1`, where that fails the test.
    pub fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        match Self::spawn(port) {
            Ok(child) => Some(RedisServer { port, child }),
            Err(e) => {
                assert!(
                    std::env::var("LLMUX_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "LLMUX_REQUIRE_SERVICES=1 but redis-server cannot run: {e}"
                );
                eprintln!("skipped: needs redis-server (the Redis server's binary): {e}");
                None
            }
        }
    }

    fn spawn(port: u16) -> std::io::Result<Child> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(child);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(std::io::Error::other(
            "redis-server did not start listening",
        ))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL: everything it held is lost) and start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Kill it (SIGKILL: everything it held is lost).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again (empty) on the same port.
    pub fn resume(&mut self) {
        self.child = Self::spawn(self.port).expect("redis-server restarts");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new, empty PostgreSQL database on `server`; its URL.
pub async fn create_postgres_database(server: &str) -> String {
    let name = format!("llmux_test_{:016x}", rand::random::<u64>());
    let pool = sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("{server}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    format!("{server}/{name}")
}

/// Drop a database made by [`create_postgres_database`] (from any context: a thread of its
/// own does the async work, so this works inside a test's runtime and in `Drop`).
pub fn drop_postgres_database(url: &str) {
    let Some((server, name)) = url.rsplit_once('/') else {
        return;
    };
    let (admin, name) = (format!("{server}/postgres"), name.to_string());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
                pool.close().await;
            }
        });
    })
    .join();
}

/// The database a test gateway uses: a SQLite file in its directory, or, when
/// `LLMUX_TEST_POSTGRES` names a server (`postgres://user@host:port`), a fresh database there
/// (dropped with the gateway).
async fn test_database() -> String {
    match std::env::var("LLMUX_TEST_POSTGRES") {
        Ok(server) => create_postgres_database(server.trim_end_matches('/')).await,
        Err(_) => "sqlite://llmux.db".to_string(),
    }
}

/// An error answer in OpenRouter's shape: the status, a JSON body `{"error": {"code",
/// "message", ...}}` whose code is that status and whose message says something. The body.
pub async fn expect_error(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = resp.text().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert!(json, "not JSON: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], status, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

/// [`expect_error`]'s message.
pub async fn error_message(resp: reqwest::Response, status: u16) -> String {
    let v = expect_error(resp, status).await;
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The generation id a response names (`X-Generation-Id`, which every chat answer carries).
pub fn generation_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-generation-id"]
        .to_str()
        .expect("a visible-ASCII generation id")
        .to_string()
}

/// Parse an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|ev| {
            let data: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The exact decimal text of a JSON number at `path` (e.g. `usage.cost`), read from the raw
/// body so no float rounding hides an error.
pub fn raw_number(body: &str, field: &str) -> String {
    let needle = format!("\"{field}\":");
    let start = body
        .rfind(&needle)
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        + needle.len();
    body[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect()
}

/// `tokens × price per million`, exact.
pub fn cost(parts: &[(u64, &str)]) -> rust_decimal::Decimal {
    use std::str::FromStr;
    parts
        .iter()
        .fold(rust_decimal::Decimal::ZERO, |acc, (tokens, per_m)| {
            acc + rust_decimal::Decimal::from(*tokens)
                * rust_decimal::Decimal::from_str(per_m).unwrap()
                / rust_decimal::Decimal::from(1_000_000)
        })
}

pub fn dec(s: &str) -> rust_decimal::Decimal {
    use std::str::FromStr;
    rust_decimal::Decimal::from_str(s)
        .or_else(|_| rust_decimal::Decimal::from_scientific(s))
        .unwrap_or_else(|_| panic!("not a decimal: {s}"))
}

pub fn fixture(path: &str) -> Vec<u8> {
    let p = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

pub fn fixture_json(path: &str) -> Value {
    serde_json::from_slice(&fixture(path)).unwrap()
}

/// An upstream that answers each request with the next recorded response, and keeps what it
/// was sent.
pub struct Replay {
    pub base: String,
    /// Request bodies.
    pub seen: Arc<Mutex<Vec<Value>>>,
    /// Request paths (with query) and headers.
    pub heads: Arc<Mutex<Vec<(String, axum::http::HeaderMap)>>>,
}

pub async fn replay(answers: Vec<(u16, &'static str, Vec<u8>)>) -> Replay {
    let queue = Arc::new(Mutex::new(std::collections::VecDeque::from(answers)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (q, s, h) = (queue.clone(), seen.clone(), heads.clone());
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: Bytes| {
            let (q, s, h) = (q.clone(), s.clone(), h.clone());
            async move {
                h.lock().push((uri.to_string(), headers));
                s.lock()
                    .push(serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null));
                match q.lock().pop_front() {
                    Some((status, ctype, bytes)) => (
                        StatusCode::from_u16(status).unwrap(),
                        [(header::CONTENT_TYPE, ctype)],
                        bytes,
                    )
                        .into_response(),
                    None => (StatusCode::INTERNAL_SERVER_ERROR, "replay exhausted").into_response(),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Replay { base, seen, heads }
}

/// A TCP proxy in front of a service that a test can cut (every connection dropped, new ones
/// refused) and restore: the service "briefly unreachable" without stopping it. It can also
/// hold the service's answers back for a while ([`TcpGate::delay`]).
pub struct TcpGate {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpGate {
    pub async fn start(target: std::net::SocketAddr) -> TcpGate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (o, d, c) = (open.clone(), delay_ms.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !o.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let delay = d.clone();
                let task = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_service, mut to_service) = outbound.into_split();
                    let up = async {
                        let _ = tokio::io::copy(&mut from_client, &mut to_service).await;
                        let _ = to_service.shutdown().await;
                    };
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = from_service.read(&mut buf).await {
                            let ms = delay.load(std::sync::atomic::Ordering::Relaxed);
                            if ms > 0 {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
                let mut c = c.lock();
                c.retain(|t| !t.is_finished());
                c.push(task.abort_handle());
            }
        });
        TcpGate {
            port,
            open,
            delay_ms,
            connections,
            accept,
        }
    }

    /// Hold each of the service's answers back this long from now on (zero: pass them at
    /// once). What the service receives, it gets at once.
    pub fn delay(&self, d: Duration) {
        self.delay_ms
            .store(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drop every connection and refuse new ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for t in self.connections.lock().drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.connections.lock().drain(..) {
            t.abort();
        }
    }
}

/// The value of the Prometheus sample starting with `needle` (name and labels) in `text`.
pub fn metric(text: &str, needle: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
