//! The pages in a real browser: headless Chromium (Debian's `chromium`), driven over the
//! DevTools protocol, renders every page with test traffic behind it; the test reads the
//! rendered DOM (charts included) and saves screenshots under `target/tmp/screenshots/`.
//!
//! Without a Chromium binary the test says so and passes, unless `LLMUX_REQUIRE_BROWSER=1`
//! (set by `.ci/run`), where a missing browser is a failure.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Browser {
    child: Child,
    ws: Socket,
    next_id: u64,
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("LLMUX_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

impl Browser {
    async fn launch() -> Option<Browser> {
        let Some(bin) = chromium() else {
            assert!(
                std::env::var("LLMUX_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "LLMUX_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)"
            );
            eprintln!("browser test skipped: no chromium on PATH (apt-get install chromium)");
            return None;
        };
        llmux::init_tls();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("DevTools endpoint");
        let port = browser_ws
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        // The page opened at start, and its own DevTools socket.
        let list: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target")["webSocketDebuggerUrl"]
            .as_str()
            .unwrap()
            .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(page.as_str())
            .await
            .unwrap();
        let mut b = Browser {
            child,
            ws,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        };
        b.call("Page.enable", json!({})).await;
        Some(b)
    }

    async fn next_message(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("the browser answers")
                .expect("socket open")
                .unwrap();
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.unwrap();
        loop {
            let m = self.next_message().await;
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    async fn wait_for_load(&mut self) {
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| e["method"] == "Page.loadEventFired")
            {
                self.events.drain(..=i);
                return;
            }
            let m = self.next_message().await;
            self.events.push(m);
        }
    }

    async fn goto(&mut self, url: &str) {
        self.events.clear();
        let r = self.call("Page.navigate", json!({"url": url})).await;
        assert!(r.get("errorText").is_none(), "{url}: {r}");
        self.wait_for_load().await;
    }

    async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    async fn text(&mut self, selector: &str) -> String {
        let js = format!("(document.querySelector({selector:?}) || {{}}).textContent || ''");
        self.eval(&js)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Submit a form by filling `field` and clicking its button, then wait for the next page.
    async fn submit(&mut self, form: &str, field: &str, value: &str) {
        self.events.clear();
        let js = format!(
            "const f = document.querySelector({form:?}); f.querySelector({field:?}).value = {value:?}; f.querySelector('button').click(); true"
        );
        self.eval(&js).await;
        self.wait_for_load().await;
    }

    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_render_with_their_data_in_chromium() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let sim = sim().await;
    let base = format!("{}/v1", sim.base_url());
    // Fresh answers on every read: the test waits for its traffic to show.
    let rest = "[rankings]\ncache_secs = 0\n\n".to_string()
        + &provider("simco", &base, "")
        + &endpoint(
            "minimax/minimax-m2.5",
            "simco",
            "mm+tokens=30",
            "0.3",
            "1.1",
            "",
        )
        + &endpoint(
            "moonshotai/kimi-k2.5",
            "simco",
            "kimi+tokens=20",
            "0.5",
            "2.5",
            "",
        )
        + &endpoint(
            "anthropic/claude-opus-4.6",
            "simco",
            "opus+tokens=10",
            "5",
            "25",
            "",
        )
        + &endpoint("openai/gpt-5", "simco", "gpt+tokens=10", "1.25", "10", "");
    let gw = Gateway::start("", &rest).await;
    let key = gw.create_key("browser", None);
    let mut spend = Decimal::ZERO;
    let mut requests = 0;
    let mut tokens = 0i64;
    for (model, n, app) in [
        (
            "minimax/minimax-m2.5",
            6,
            ("https://alpha.example", "Alpha Studio"),
        ),
        (
            "moonshotai/kimi-k2.5",
            4,
            ("https://beta.example", "Beta Chat"),
        ),
        (
            "anthropic/claude-opus-4.6",
            2,
            ("https://alpha.example", "Alpha Studio"),
        ),
        ("openai/gpt-5", 3, ("https://beta.example", "Beta Chat")),
    ] {
        for _ in 0..n {
            let r = gw
                .http
                .post(gw.url("/api/v1/chat/completions"))
                .bearer_auth(&key.key)
                .header("HTTP-Referer", app.0)
                .header("X-Title", app.1)
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "tell me about charts"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            spend += dec(&raw_number(&text, "cost"));
            tokens += raw_number(&text, "total_tokens").parse::<i64>().unwrap();
            requests += 1;
        }
    }
    // Records are written in batches off the request path: wait until all are in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r: Value = gw
            .get_public_json("/api/v1/rankings?period=day&weeks=1")
            .await;
        if r["data"]["window_tokens"].as_str() == Some(tokens.to_string().as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "records not written: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut shots = Vec::new();

    // Rankings: the stacked model chart, author shares, origins over time, apps, growth.
    browser.goto(&gw.url("/rankings")).await;
    let models_chart = browser.text("#chart-models svg").await;
    for name in [
        "MiniMax: MiniMax M2.5",
        "MoonshotAI: Kimi K2.5",
        "Anthropic: Claude Opus 4.6",
        "OpenAI: GPT-5",
    ] {
        assert!(
            models_chart.contains(name),
            "{name} in the model chart: {models_chart}"
        );
    }
    let bars = browser
        .eval("document.querySelectorAll('#chart-models svg rect').length")
        .await;
    assert!(
        bars.as_u64().unwrap() >= 4 + 4,
        "stacked bars and legend swatches: {bars}"
    );
    let origins = browser.text("#chart-origins").await;
    assert!(
        origins.contains("China (CN)") && origins.contains("United States (US)"),
        "{origins}"
    );
    let authors = browser.text("#chart-authors svg").await;
    assert!(
        authors.contains("MiniMax") && authors.contains("%"),
        "{authors}"
    );
    let apps = browser.text("#apps").await;
    assert!(
        apps.contains("Alpha Studio") && apps.contains("Beta Chat"),
        "{apps}"
    );
    let growth_rows = browser
        .eval("document.querySelectorAll('#growth tr').length")
        .await;
    assert_eq!(growth_rows, 5, "a header and four models");
    shots.push(browser.screenshot("rankings").await);

    // The catalog, filtered, and one model with its endpoint's live health and usage.
    browser.goto(&gw.url("/models?q=minimax&routable=1")).await;
    let table = browser.text("#models").await;
    assert!(
        table.contains("MiniMax: MiniMax M2.5") && !table.contains("GPT-5"),
        "{table}"
    );
    browser
        .goto(&gw.url("/models?origin=US&routable=1&sort=price"))
        .await;
    let rows: Vec<String> = serde_json::from_value(
        browser
            .eval("[...document.querySelectorAll('#models tr td:first-child a')].map(a => a.textContent)")
            .await,
    )
    .unwrap();
    assert_eq!(
        rows,
        ["OpenAI: GPT-5", "Anthropic: Claude Opus 4.6"],
        "US models by output price"
    );
    shots.push(browser.screenshot("models").await);
    browser.goto(&gw.url("/models/minimax/minimax-m2.5")).await;
    let endpoints = browser.text("#endpoints").await;
    assert!(
        endpoints.contains("simco") && endpoints.contains("100.0%"),
        "{endpoints}"
    );
    let usage = browser.text("#chart-usage").await;
    assert!(
        usage.contains("minimax/minimax-m2.5") && usage.contains("6 requests"),
        "{usage}"
    );
    shots.push(browser.screenshot("model").await);

    // Compare: the ratio an analyst quotes.
    browser
        .goto(&gw.url("/compare?models=anthropic/claude-opus-4.6,minimax/minimax-m2.5"))
        .await;
    let ratios = browser.text("#ratios").await;
    assert!(ratios.contains("22.73x"), "{ratios}");
    assert!(browser.text("#what-if").await.contains("public traffic"));
    shots.push(browser.screenshot("compare").await);

    // Activity: a wrong key is refused; the right one signs in and sees its spend.
    browser.goto(&gw.url("/activity")).await;
    browser
        .submit(
            "form[action='/activity/sign-in']",
            "input[name=key]",
            "sk-wrong",
        )
        .await;
    assert!(
        browser
            .text("main")
            .await
            .contains("That key is not valid.")
    );
    browser
        .submit(
            "form[action='/activity/sign-in']",
            "input[name=key]",
            &key.key,
        )
        .await;
    let totals = browser.text("#totals").await;
    let spend = spend.normalize();
    assert!(
        totals.contains(&format!("${spend}")),
        "spend {spend} in {totals}"
    );
    assert!(totals.contains(&format!("{requests} requests")), "{totals}");
    let spend_chart = browser.text("#chart-spend svg").await;
    assert!(
        spend_chart.contains("MiniMax: MiniMax M2.5"),
        "{spend_chart}"
    );
    let csv = browser
        .eval("fetch('/activity.csv?range=1d&by=model').then(r => r.text())")
        .await;
    let csv = csv.as_str().unwrap();
    let csv_requests: i64 = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(csv_requests, requests);
    shots.push(browser.screenshot("activity").await);
    browser.goto(&gw.url("/activity?range=1d&by=key")).await;
    assert!(
        browser.text("#groups").await.contains("browser"),
        "grouped by the key's name"
    );

    for s in &shots {
        assert!(
            std::fs::metadata(s).unwrap().len() > 10_000,
            "{}",
            s.display()
        );
    }
    eprintln!("screenshots: {}", shots[0].parent().unwrap().display());
}
