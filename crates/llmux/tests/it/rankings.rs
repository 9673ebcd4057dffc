//! Rankings and analytics end to end: known traffic across four weeks (the clock moved by
//! restarting the server with `LLMUX_CLOCK_OFFSET_MS`), then every rankings, dataset,
//! comparison and activity number checked exactly against what the clients were answered.
//! Market data import, and rollups against a recount after a crash.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use crate::harness::*;

/// Wednesdays at noon UTC, one per week (weeks start on the Mondays 01-26, 02-02, 02-09, 02-16).
const WEEKS: [&str; 4] = ["2026-01-28", "2026-02-04", "2026-02-11", "2026-02-18"];
const MONDAYS: [&str; 4] = ["2026-01-26", "2026-02-02", "2026-02-09", "2026-02-16"];

fn midday_ms(date: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// The offset that puts the server's clock at noon of `date`.
fn offset_to(date: &str) -> String {
    (midday_ms(date) - chrono::Utc::now().timestamp_millis()).to_string()
}

/// (model, provider, upstream directive, prompt $/M, completion $/M)
const ENDPOINTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "minimax/minimax-m2.5",
        "simco",
        "mm+tokens=30",
        "0.3",
        "1.1",
    ),
    (
        "minimax/minimax-m2.5:free",
        "simco",
        "mmf+tokens=12",
        "0",
        "0",
    ),
    (
        "moonshotai/kimi-k2.5",
        "simco",
        "kimi+tokens=25",
        "0.5",
        "2.5",
    ),
    ("z-ai/glm-5", "simco", "glm+tokens=20", "1", "3.2"),
    (
        "anthropic/claude-opus-4.6",
        "simco",
        "opus+tokens=40",
        "5",
        "25",
    ),
    ("openai/gpt-5", "altco", "gpt5+tokens=35", "1.25", "10"),
    ("mistralai/mistral-large", "simco", "ml+tokens=15", "2", "6"),
];

/// Requests to send: (model, key, app as (referer, title), how many).
type Step<'a> = (
    &'static str,
    &'a Key,
    Option<(&'static str, &'static str)>,
    usize,
);

/// What one answered request contributed, as the client saw it.
#[derive(Debug, Clone)]
struct Rec {
    week: usize,
    model: String,
    provider: String,
    app: Option<(String, String)>,
    account: String,
    key: String,
    public: bool,
    prompt: i64,
    completion: i64,
    cost: Decimal,
}

impl Rec {
    fn tokens(&self) -> i64 {
        self.prompt + self.completion
    }
}

/// Percent of `num / den` to two decimals, half away from zero (as llmux promises).
fn pct(num: i64, den: i64) -> Option<String> {
    (den != 0).then(|| {
        (Decimal::from(num) * Decimal::from(100) / Decimal::from(den))
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
            .to_string()
    })
}

fn change(before: i64, after: i64) -> Option<String> {
    pct(after - before, before)
}

/// A JSON percentage (a number or null) as llmux's two-decimal string.
fn json_pct(v: &Value) -> Option<String> {
    v.as_f64().map(|f| {
        Decimal::try_from(f)
            .unwrap()
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
            .to_string()
    })
}

fn norm(s: Option<String>) -> Option<String> {
    s.map(|s| dec(&s).normalize().to_string())
}

/// Check `GET /rankings` for one grouping against the records.
fn check_rankings(body: &Value, recs: &[Rec], by: &str, group: &dyn Fn(&Rec) -> String) {
    let data = &body["data"];
    assert_eq!(data["by"], by);
    let periods: Vec<&str> = data["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["start"].as_str().unwrap())
        .collect();
    assert_eq!(periods, MONDAYS, "{by}");
    let mut tokens: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    let mut totals = [0i64; 4];
    for r in recs.iter().filter(|r| r.public) {
        tokens.entry(group(r)).or_default()[r.week] += r.tokens();
        totals[r.week] += r.tokens();
    }
    for (i, p) in data["periods"].as_array().unwrap().iter().enumerate() {
        assert_eq!(p["total_tokens"], totals[i].to_string(), "{by} period {i}");
    }
    let mut expected: Vec<(&String, &[i64; 4])> = tokens.iter().collect();
    expected.sort_by(|a, b| {
        b.1[3]
            .cmp(&a.1[3])
            .then(b.1.iter().sum::<i64>().cmp(&a.1.iter().sum::<i64>()))
            .then(a.0.cmp(b.0))
    });
    let groups = data["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    let want: Vec<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want, "{by}: groups in order");
    let window_total: i64 = totals.iter().sum();
    for (g, (key, t)) in groups.iter().zip(&expected) {
        let ctx = format!("{by} {key}");
        assert_eq!(g["tokens"], t[3].to_string(), "{ctx}");
        assert_eq!(
            norm(json_pct(&g["share"])),
            norm(pct(t[3], totals[3])),
            "{ctx} share"
        );
        assert_eq!(
            norm(json_pct(&g["change"])),
            norm(change(t[2], t[3])),
            "{ctx} change"
        );
        assert_eq!(
            norm(json_pct(&g["change_window"])),
            norm(change(t[0], t[3])),
            "{ctx} window change"
        );
        let window: i64 = t.iter().sum();
        assert_eq!(g["window_tokens"], window.to_string(), "{ctx}");
        assert_eq!(
            norm(json_pct(&g["window_share"])),
            norm(pct(window, window_total)),
            "{ctx} window share"
        );
        // Ranks within each week: tokens descending, then key.
        for (w, cell) in g["series"].as_array().unwrap().iter().enumerate() {
            assert_eq!(cell["tokens"], t[w].to_string(), "{ctx} week {w}");
            assert_eq!(
                norm(json_pct(&cell["share"])),
                norm(pct(t[w], totals[w])),
                "{ctx} week {w}"
            );
            let before = if w == 0 { 0 } else { t[w - 1] };
            assert_eq!(
                norm(json_pct(&cell["change"])),
                norm(change(before, t[w])),
                "{ctx} week {w}"
            );
            let rank = (t[w] > 0).then(|| {
                1 + tokens
                    .iter()
                    .filter(|(k, o)| o[w] > t[w] || (o[w] == t[w] && k.as_str() < key.as_str()))
                    .count()
            });
            assert_eq!(
                cell["rank"].as_u64().map(|r| r as usize),
                rank,
                "{ctx} week {w} rank"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rankings_compare_and_activity_are_exact() {
    let sim = sim().await;
    let base = format!("{}/v1", sim.base_url());
    let mut rest = provider("simco", &base, "") + &provider("altco", &base, "");
    for (model, prov, upstream, p, c) in ENDPOINTS {
        rest += &endpoint(model, prov, upstream, p, c, "");
    }
    let mut gw = Gateway::start_with_env(
        "",
        &rest,
        &[("LLMUX_CLOCK_OFFSET_MS", &offset_to(WEEKS[0]))],
    )
    .await;
    let alpha = gw.create_key("alpha", None);
    let beta = gw.create_key("beta", None);
    let hidden = gw.create_key("hidden", None);
    // The hidden account's traffic stays out of public rankings.
    let mut config = std::fs::read_to_string(&gw.config).unwrap();
    config += &format!(
        "\n[rankings]\nprivate_accounts = [\"{}\"]\n",
        hidden.account
    );
    std::fs::write(&gw.config, config).unwrap();

    // Requests per week and model: (model, key, app) repeated `n` times.
    let alpha_app = Some(("https://alpha.example", "Alpha Studio"));
    let beta_app = Some(("https://beta.example", "Beta Chat"));
    let plan = |week: usize| -> Vec<Step> {
        vec![
            ("minimax/minimax-m2.5", &alpha, alpha_app, 2 + week),
            ("minimax/minimax-m2.5:free", &beta, beta_app, 1),
            ("moonshotai/kimi-k2.5", &beta, beta_app, 1 + week / 2),
            ("z-ai/glm-5", &alpha, None, 1 + week % 2),
            (
                "anthropic/claude-opus-4.6",
                &beta,
                None,
                if week == 1 { 0 } else { 1 },
            ),
            ("openai/gpt-5", &alpha, alpha_app, 3 - week / 2),
            (
                "mistralai/mistral-large",
                &beta,
                beta_app,
                if week == 0 || week == 3 { 1 } else { 0 },
            ),
            (
                "anthropic/claude-opus-4.6",
                &hidden,
                Some(("https://hidden.example", "Hidden")),
                2,
            ),
        ]
    };
    let mut recs: Vec<Rec> = Vec::new();
    for (week, date) in WEEKS.iter().enumerate() {
        gw.terminate();
        gw.set_env("LLMUX_CLOCK_OFFSET_MS", &offset_to(date));
        gw.restart().await;
        for (model, key, app, n) in plan(week) {
            for i in 0..n {
                let mut req = gw
                    .http
                    .post(gw.url("/api/v1/chat/completions"))
                    .bearer_auth(&key.key);
                if let Some((referer, title)) = app {
                    req = req.header("HTTP-Referer", referer).header("X-Title", title);
                }
                let body = json!({"model": model, "stream": i % 2 == 1,
                                  "messages": [{"role": "user", "content": format!("week {week} request {i} about rankings")}]});
                let r = req.json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200, "{model}");
                let text = r.text().await.unwrap();
                let usage: Value = if i % 2 == 1 {
                    let data = sse_data(&text);
                    serde_json::from_str::<Value>(&data[data.len() - 2]).unwrap()["usage"].clone()
                } else {
                    serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
                };
                recs.push(Rec {
                    week,
                    model: model.to_string(),
                    provider: ENDPOINTS
                        .iter()
                        .find(|e| e.0 == model)
                        .unwrap()
                        .1
                        .to_string(),
                    app: app.map(|(r, t)| (r.to_string(), t.to_string())),
                    account: key.account.clone(),
                    key: key.hash.clone(),
                    public: key.account != hidden.account,
                    prompt: usage["prompt_tokens"].as_i64().unwrap(),
                    completion: usage["completion_tokens"].as_i64().unwrap(),
                    cost: dec(&raw_number(&text, "cost")),
                });
            }
        }
    }
    assert!(recs.iter().all(|r| r.completion > 0));
    // Rankings read what is written; a graceful restart writes everything (records are
    // otherwise batched every 200 ms).
    gw.terminate();
    gw.restart().await;
    let catalog: Value = gw
        .get("/api/v1/models", &alpha.key)
        .await
        .json()
        .await
        .unwrap();
    let canonical = |model: &str| -> String {
        let base = model.split(':').next().unwrap();
        let slug = catalog["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == base)
            .map(|m| m["canonical_slug"].as_str().unwrap().to_string())
            .unwrap();
        if model.ends_with(":free") {
            format!("{slug}:free")
        } else {
            slug
        }
    };
    let origin = |model: &str| match model.split('/').next().unwrap() {
        "minimax" | "moonshotai" | "z-ai" => "CN",
        "anthropic" | "openai" => "US",
        "mistralai" => "FR",
        other => panic!("{other}"),
    };

    // Rankings, every grouping, over the four weeks.
    let end = WEEKS[3];
    let get = async |path: String| gw.get_public_json(&path).await;
    let q = |by: &str| format!("/api/v1/rankings?period=week&by={by}&weeks=4&end_date={end}");
    check_rankings(&get(q("model")).await, &recs, "model", &|r| r.model.clone());
    check_rankings(&get(q("author")).await, &recs, "author", &|r| {
        r.model.split('/').next().unwrap().to_string()
    });
    check_rankings(&get(q("origin")).await, &recs, "origin", &|r| {
        origin(&r.model).to_string()
    });
    check_rankings(&get(q("provider")).await, &recs, "provider", &|r| {
        r.provider.clone()
    });
    let app_recs: Vec<Rec> = recs.iter().filter(|r| r.app.is_some()).cloned().collect();
    let apps = get(q("app")).await;
    check_rankings(&apps, &app_recs, "app", &|r| r.app.clone().unwrap().0);
    assert_eq!(apps["data"]["groups"][0]["name"], "Alpha Studio");
    let by_origin = get(q("origin")).await;
    assert_eq!(by_origin["data"]["groups"][0]["name"], "China");
    // The same table from the CLI.
    let out = gw.cli(&[
        "rankings",
        "--by",
        "origin",
        "--weeks",
        "4",
        "--end-date",
        end,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["groups"], by_origin["data"]["groups"]);
    let out = gw.cli(&[
        "rankings",
        "--by",
        "origin",
        "--weeks",
        "4",
        "--end-date",
        end,
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("China (CN)") && table.contains("United States (US)"),
        "{table}"
    );
    // Bad parameters are 400s that name the parameter.
    for bad in [
        "period=fortnight",
        "by=planet",
        "weeks=0",
        "end_date=2026-13-01",
        "source=nope&by=app",
    ] {
        let r = gw.get_public(&format!("/api/v1/rankings?{bad}")).await;
        assert_eq!(r.status(), 400, "{bad}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], 400);
    }

    // OpenRouter's daily dataset: per day, models by tokens, permaslugs, no private traffic.
    let daily = get(format!(
        "/api/v1/datasets/rankings-daily?start_date={}&end_date={end}",
        MONDAYS[0]
    ))
    .await;
    assert_eq!(daily["meta"]["start_date"], MONDAYS[0]);
    assert_eq!(daily["meta"]["end_date"], end);
    assert_eq!(daily["meta"]["version"], "v1");
    let mut want: Vec<(String, String, i64)> = Vec::new();
    for (w, date) in WEEKS.iter().enumerate() {
        let mut per: BTreeMap<String, i64> = BTreeMap::new();
        for r in recs.iter().filter(|r| r.week == w && r.public) {
            *per.entry(canonical(&r.model)).or_default() += r.tokens();
        }
        let mut rows: Vec<(String, i64)> = per.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        want.extend(rows.into_iter().map(|(p, t)| (date.to_string(), p, t)));
    }
    let got: Vec<(String, String, i64)> = daily["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["date"].as_str().unwrap().to_string(),
                r["model_permaslug"].as_str().unwrap().to_string(),
                r["total_tokens"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        got.iter()
            .any(|r| r.1 == "minimax/minimax-m2.5-20260211:free"),
        "{got:?}"
    );
    let weekly = get(format!(
        "/api/v1/datasets/rankings-daily?start_date={}&end_date={end}&period=week",
        MONDAYS[0]
    ))
    .await;
    let weekly_dates: BTreeSet<&str> = weekly["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["date"].as_str().unwrap())
        .collect();
    assert_eq!(weekly_dates, MONDAYS.into_iter().collect::<BTreeSet<_>>());

    // App rankings: popular over the last week, trending against the three weeks before.
    let week_apps = |w: usize| {
        let mut m: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for r in recs
            .iter()
            .filter(|r| r.week == w && r.public && r.app.is_some())
        {
            let e = m.entry(r.app.clone().unwrap().0).or_default();
            e.0 += r.tokens();
            e.1 += 1;
        }
        m
    };
    let popular = get(format!(
        "/api/v1/datasets/app-rankings?start_date={}&end_date={}",
        MONDAYS[3], "2026-02-22"
    ))
    .await;
    let mut want: Vec<(String, i64, i64)> = week_apps(3)
        .into_iter()
        .map(|(a, (t, n))| (a, t, n))
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let got: Vec<(String, i64, i64)> = popular["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["app"].as_str().unwrap().to_string(),
                a["total_tokens"].as_str().unwrap().parse().unwrap(),
                a["total_requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(popular["data"][0]["rank"], 1);
    assert_eq!(popular["data"][0]["app_name"], "Alpha Studio");
    let trending = get(format!(
        "/api/v1/datasets/app-rankings?sort=trending&start_date={}&end_date={}",
        MONDAYS[3], "2026-02-22"
    ))
    .await;
    let mut want: Vec<(String, i128)> = week_apps(3)
        .into_iter()
        .map(|(a, (t, _))| {
            let before: i64 = (0..3)
                .map(|w| week_apps(w).get(&a).map_or(0, |x| x.0))
                .sum();
            (a, 3 * t as i128 - before as i128)
        })
        .filter(|x| x.1 > 0)
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let got: Vec<String> = trending["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["app"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, want.into_iter().map(|x| x.0).collect::<Vec<_>>());

    // Price comparison: exact ratios.
    let cmp =
        get("/api/v1/compare?models=anthropic/claude-opus-4.6,minimax/minimax-m2.5".into()).await;
    let ratio = cmp["data"]["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["a"] == "anthropic/claude-opus-4.6")
        .unwrap();
    assert_eq!(ratio["completion"], "22.73", "{cmp}");
    assert_eq!(ratio["prompt"], "16.67");
    assert_eq!(cmp["data"]["models"][1]["pricing"]["completion"], "1.1");
    let r = gw.get_public("/api/v1/compare?models=nobody/nothing").await;
    assert_eq!(r.status(), 404);

    // What-if: alpha's last week repriced on two models.
    let wi: Value = gw
        .get(&format!("/api/v1/compare/what-if?models=anthropic/claude-opus-4.6,minimax/minimax-m2.5&period=week&end_date={end}"), &alpha.key)
        .await
        .json()
        .await
        .unwrap();
    let alpha_week: Vec<&Rec> = recs
        .iter()
        .filter(|r| r.week == 3 && r.key == alpha.hash)
        .collect();
    let actual: Decimal = alpha_week.iter().map(|r| r.cost).sum();
    assert_eq!(
        dec(wi["data"]["actual_cost"].as_str().unwrap()),
        actual,
        "{wi}"
    );
    let (prompt, completion): (i64, i64) = alpha_week
        .iter()
        .fold((0, 0), |a, r| (a.0 + r.prompt, a.1 + r.completion));
    assert_eq!(wi["data"]["usage"]["prompt_tokens"], prompt.to_string());
    for (i, (p, c)) in [("5", "25"), ("0.3", "1.1")].iter().enumerate() {
        let would = cost(&[(prompt as u64, p), (completion as u64, c)]);
        assert_eq!(
            dec(wi["data"]["alternatives"][i]["cost"].as_str().unwrap()),
            would,
            "{wi}"
        );
        assert_eq!(
            dec(wi["data"]["alternatives"][i]["savings"].as_str().unwrap()),
            actual - would
        );
    }
    let r = gw
        .get_public("/api/v1/compare/what-if?models=openai/gpt-5")
        .await;
    assert_eq!(r.status(), 401, "an account's what-if needs its key");

    // Activity: the key's last 30 days (the CLI), and OpenRouter's /activity (completed days).
    let out = gw.cli(&["activity", "--key", &alpha.key, "--range", "1m", "--csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let (mut requests, mut tokens, mut spend) = (0i64, 0i64, Decimal::ZERO);
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        requests += f[3].parse::<i64>().unwrap();
        tokens += f[4].parse::<i64>().unwrap() + f[5].parse::<i64>().unwrap();
        spend += dec(f[7]);
    }
    let mine: Vec<&Rec> = recs.iter().filter(|r| r.key == alpha.hash).collect();
    assert_eq!(requests, mine.len() as i64);
    assert_eq!(tokens, mine.iter().map(|r| r.tokens()).sum::<i64>());
    assert_eq!(spend, mine.iter().map(|r| r.cost).sum::<Decimal>());
    let out = gw.cli(&[
        "activity",
        "--account",
        &hidden.account,
        "--range",
        "1m",
        "--by",
        "key",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let hidden_requests = recs.iter().filter(|r| r.account == hidden.account).count();
    assert!(
        text.contains(&format!("{hidden_requests} requests")),
        "private traffic is in its own activity: {text}"
    );
    let act: Value = gw
        .get("/api/v1/activity", &alpha.key)
        .await
        .json()
        .await
        .unwrap();
    let rows = act["data"].as_array().unwrap();
    let completed: Vec<&&Rec> = mine.iter().filter(|r| r.week < 3).collect();
    assert_eq!(
        rows.iter()
            .map(|r| r["requests"].as_i64().unwrap())
            .sum::<i64>(),
        completed.len() as i64
    );
    assert_eq!(
        rows.iter().map(|r| r["prompt_tokens"].as_i64().unwrap() + r["completion_tokens"].as_i64().unwrap()).sum::<i64>(),
        completed.iter().map(|r| r.tokens()).sum::<i64>()
    );
    let dates: BTreeSet<&str> = rows.iter().map(|r| r["date"].as_str().unwrap()).collect();
    assert_eq!(dates, WEEKS[..3].iter().copied().collect::<BTreeSet<_>>());
    assert!(
        rows.iter()
            .any(|r| r["model_permaslug"] == "minimax/minimax-m2.5-20260211"),
        "{act}"
    );

    // The rollups equal a recount, and a rebuild changes nothing.
    let before = get(q("model")).await;
    gw.terminate();
    let out = gw.cli(&["rollups", "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.cli(&["rollups", "rebuild"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gw.restart().await;
    let after = gw.get_public_json(&q("model")).await;
    assert_eq!(before, after);
}

/// A rankings-daily file as OpenRouter publishes it: the news report's weeks (Chinese-origin
/// models passing US ones in February 2026), spread over days and models.
fn market_file() -> Value {
    // Tokens per week by model (billions), weeks starting 01-26, 02-02, 02-09, 02-16.
    let weekly: &[(&str, [i64; 4])] = &[
        ("minimax/minimax-m2.5-20260211", [0, 300, 1500, 1700]),
        ("moonshotai/kimi-k2.5-20260127", [900, 1100, 1200, 1300]),
        ("z-ai/glm-5-20260211", [0, 0, 500, 1050]),
        ("deepseek/deepseek-v3.2-20251201", [1000, 900, 800, 1010]),
        ("newlab-cn/frontier-1-20260101", [373, 200, 120, 100]),
        (
            "anthropic/claude-4.6-opus-20260205",
            [900, 1000, 1100, 1000],
        ),
        ("openai/gpt-5-2025-08-07", [1200, 1100, 1000, 900]),
        ("google/gemini-2.5-flash", [800, 850, 840, 800]),
        ("other", [100, 100, 100, 100]),
    ];
    let mut data = Vec::new();
    for (w, monday) in MONDAYS.iter().enumerate() {
        let start = chrono::NaiveDate::parse_from_str(monday, "%Y-%m-%d").unwrap();
        for (slug, tokens) in weekly {
            // Seven days that sum exactly to the week.
            let total = tokens[w] * 1_000_000_000;
            for d in 0..7 {
                let share = if d < 6 {
                    total / 7
                } else {
                    total - 6 * (total / 7)
                };
                if share > 0 {
                    data.push(json!({"date": (start + chrono::Days::new(d)).to_string(),
                                     "model_permaslug": slug, "total_tokens": share.to_string()}));
                }
            }
        }
    }
    json!({"data": data, "meta": {"as_of": "2026-02-23T02:00:00Z", "start_date": MONDAYS[0], "end_date": "2026-02-22", "version": "v1"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn market_data_reproduces_the_february_2026_report() {
    let mut gw = Gateway::start("", "[[models]]\nid = \"newlab-cn/frontier-1\"\nname = \"NewLab Frontier 1\"\norigin = \"CN\"\n").await;
    let file = gw.dir.path().join("rankings-daily.json");
    std::fs::write(&file, serde_json::to_vec(&market_file()).unwrap()).unwrap();
    let import = |gw: &Gateway, path: &std::path::Path| {
        gw.cli(&[
            "rankings",
            "import",
            path.to_str().unwrap(),
            "--source",
            "openrouter",
        ])
    };
    let out = import(&gw, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = market_file()["data"].as_array().unwrap().len();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{rows} rows checked, {rows} new or changed"))
    );
    // The same file again changes nothing.
    let out = import(&gw, &file);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{rows} rows checked, 0 new or changed")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A malformed row rejects the whole file, naming the row; nothing of it is imported.
    let mut bad = market_file();
    bad["data"][5]["total_tokens"] = json!("12abc");
    bad["data"][0]["total_tokens"] = json!("999");
    let bad_file = gw.dir.path().join("bad.json");
    std::fs::write(&bad_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let out = gw.cli(&[
        "rankings",
        "import",
        bad_file.to_str().unwrap(),
        "--source",
        "openrouter",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data[5].total_tokens") && err.contains("nothing was imported"),
        "{err}"
    );

    gw.terminate();
    gw.restart().await;
    let get = async |path: &str| gw.get_public_json(path).await;
    // Origin by week: the week of 9-15 Feb (CN 4.12T, US 2.94T), the week after (5.16T against
    // 2.70T), and CN +127% over the window.
    let r = get("/api/v1/rankings?source=openrouter&by=origin&period=week&weeks=4").await;
    let cn = &r["data"]["groups"][0];
    assert_eq!(cn["key"], "CN", "{r}");
    let series: Vec<&str> = cn["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tokens"].as_str().unwrap())
        .collect();
    assert_eq!(
        series,
        [
            "2273000000000",
            "2500000000000",
            "4120000000000",
            "5160000000000"
        ]
    );
    let us = &r["data"]["groups"][1];
    assert_eq!(us["key"], "US");
    let us_series: Vec<&str> = us["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tokens"].as_str().unwrap())
        .collect();
    assert_eq!(us_series[2..], ["2940000000000", "2700000000000"]);
    assert_eq!(
        r["data"]["periods"][3]["end"], "2026-02-22",
        "the window ends at the source's latest data"
    );
    // Shares of each week's whole total (which includes other origins).
    let total_last: i64 = r["data"]["periods"][3]["total_tokens"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        norm(json_pct(&cn["share"])),
        norm(pct(5_160_000_000_000, total_last))
    );
    assert_eq!(json_pct(&cn["change"]).as_deref(), Some("25.24"));
    assert_eq!(json_pct(&cn["change_window"]).as_deref(), Some("127.01"));
    // Top models of the last week: four of the top five are Chinese, MiniMax M2.5 first.
    let m = get("/api/v1/rankings?source=openrouter&by=model&period=week&weeks=1&limit=5").await;
    let top: Vec<&str> = m["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        top,
        [
            "minimax/minimax-m2.5",
            "moonshotai/kimi-k2.5",
            "z-ai/glm-5",
            "deepseek/deepseek-v3.2",
            "anthropic/claude-opus-4.6"
        ]
    );
    // Unknown permaslugs keep their author (and so their origin), dates stripped.
    let a = get("/api/v1/rankings?source=openrouter&by=model&period=week&weeks=4").await;
    assert!(
        a["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["key"] == "newlab-cn/frontier-1"),
        "{a}"
    );
    // The CLI shows the same source.
    let out = gw.cli(&[
        "rankings",
        "--source",
        "openrouter",
        "--by",
        "origin",
        "--weeks",
        "4",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("China (CN)") && table.contains("5.16T") && table.contains("+127.01%"),
        "{table}"
    );
    // The dataset endpoint serves an imported source too, `other` last within its date.
    let d = get("/api/v1/datasets/rankings-daily?source=openrouter&start_date=2026-02-22&end_date=2026-02-22").await;
    let rows = d["data"].as_array().unwrap();
    assert_eq!(rows.last().unwrap()["model_permaslug"], "other");
    assert_eq!(rows[0]["model_permaslug"], "minimax/minimax-m2.5-20260211");
    let r = gw.get_public("/api/v1/rankings?source=missing").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_equal_a_recount_after_a_crash_mid_ingest() {
    let sim = sim().await;
    let base = format!("{}/v1", sim.base_url());
    let rest = provider("simco", &base, "")
        + &endpoint(
            "deepseek/deepseek-v3.2",
            "simco",
            "d+tokens=7",
            "0.28",
            "0.42",
            "",
        )
        + &endpoint("z-ai/glm-5", "simco", "g+tokens=9", "1", "3.2", "");
    let mut gw = Gateway::start(
        "",
        &format!("[metering]\nflush_interval_ms = 50\nbatch_size = 16\n\n{rest}"),
    )
    .await;
    let key = gw.create_key("load", None);
    // Keep traffic flowing from several clients, and kill the server in the middle of it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (http, url, k, stop) = (
            gw.http.clone(),
            gw.url("/api/v1/chat/completions"),
            key.key.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let model = if c % 2 == 0 {
                    "deepseek/deepseek-v3.2"
                } else {
                    "z-ai/glm-5"
                };
                let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
                let r = http
                    .post(&url)
                    .bearer_auth(&k)
                    .header("HTTP-Referer", format!("https://c{c}.example"))
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => answered += 1,
                    _ => break,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    gw.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for c in clients {
        answered += c.await.unwrap();
    }
    assert!(answered > 50, "traffic was flowing: {answered}");
    gw.restart().await;
    let out = gw.cli(&["rollups", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 model, 0 app, 0 account"), "{text}");
    // And the rankings total equals the records' tokens, counted directly in the database.
    let tokens = tokens_in_records(&gw);
    let r: Value = gw
        .get_public_json("/api/v1/rankings?period=day&weeks=1")
        .await;
    assert_eq!(r["data"]["periods"][0]["total_tokens"], tokens.to_string());
}

/// Prompt plus completion tokens of every raw record, read straight from the database.
fn tokens_in_records(gw: &Gateway) -> i64 {
    let url = gw.db_url();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async move {
            use sqlx::Row;
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(tokens_prompt + tokens_completion), 0) AS BIGINT) FROM generations",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            let n: i64 = row.get(0);
            pool.close().await;
            n
        })
    })
}

/// Poll `url` until `done` holds on its JSON (or fail after `secs`).
async fn wait_for(url: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        if done(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{url}: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn groups(v: &Value) -> usize {
    v["data"]["groups"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_traffic_fills_the_rankings() {
    // `llmux demo-traffic` against a gateway: many models, apps and keys.
    let sim = sim().await;
    let mut rest = "[rankings]\ncache_secs = 0\n\n".to_string()
        + &provider("simco", &format!("{}/v1", sim.base_url()), "");
    for (m, up) in [
        ("minimax/minimax-m2.5", "a"),
        ("moonshotai/kimi-k2.5", "b"),
        ("z-ai/glm-5", "c"),
        ("deepseek/deepseek-v3.2", "d"),
    ] {
        rest += &endpoint(m, "simco", up, "1", "2", "");
    }
    let gw = Gateway::start("", &rest).await;
    let (a, b) = (gw.create_key("team-a", None), gw.create_key("team-b", None));
    let out = gw.cli(&[
        "demo-traffic",
        "--url",
        &gw.base,
        "--key",
        &a.key,
        "--key",
        &b.key,
        "--rps",
        "60",
        "--minutes",
        "0.05",
        "--seed",
        "3",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answered: u64 = text
        .split("requests: ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(answered >= 30, "{text}");
    let apps = wait_for(
        &gw.url("/api/v1/rankings?period=day&weeks=1&by=app"),
        10,
        |v| groups(v) >= 3,
    )
    .await;
    assert!(groups(&apps) >= 3, "{apps}");
    let models = wait_for(
        &gw.url("/api/v1/rankings?period=day&weeks=1&by=model"),
        10,
        |v| groups(v) >= 4,
    )
    .await;
    assert_eq!(
        groups(&models),
        4,
        "only the gateway's models answer: {models}"
    );

    // `serve --demo` runs the same workload through itself in the background.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "serve",
            "--demo",
            "--demo-rps",
            "40",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("LLMUX_DATA_DIR", dir.path())
        .env("LLMUX_LOG", "warn")
        .env_remove("LLMUX_CONFIG")
        .env_remove("LLMUX_DATABASE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the address, then keep draining what the server prints.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("llmux listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let base = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    // Ranking answers are kept 15 s by default: ask for a fresh window each time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = (0, 0);
    while std::time::Instant::now() < deadline && (seen.0 < 5 || seen.1 < 3) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let nonce = std::time::Instant::now().elapsed().as_nanos() + rand::random::<u32>() as u128;
        let m: Value = reqwest::get(format!(
            "{base}/api/v1/rankings?period=day&weeks=1&by=model&n={nonce}"
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let a: Value = reqwest::get(format!(
            "{base}/api/v1/rankings?period=day&weeks=1&by=app&n={nonce}"
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        seen = (groups(&m), groups(&a));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.0 >= 5 && seen.1 >= 3,
        "demo traffic reached {} models and {} apps",
        seen.0,
        seen.1
    );
}

/// The rankings page and the rankings API share one cache of recent answers and a path
/// (`/rankings` and `/api/v1/rankings`): each gets its own answer, in whichever order they
/// are asked, with the same query.
#[tokio::test(flavor = "multi_thread")]
async fn the_rankings_page_and_api_answer_for_themselves() {
    let gw = Gateway::start("", "").await;
    for (first, second) in [
        ("/rankings", "/api/v1/rankings"),
        ("/api/v1/rankings", "/rankings"),
    ] {
        let query = format!("?period=week&weeks=4&order={}", first.len());
        for path in [first, second] {
            let r = gw.get_public(&format!("{path}{query}")).await;
            assert_eq!(r.status(), 200, "{path}");
            let kind = r.headers()["content-type"].to_str().unwrap().to_string();
            let body = r.text().await.unwrap();
            if path == "/rankings" {
                assert!(kind.starts_with("text/html"), "{path}: {kind}");
                assert!(
                    body.starts_with("<!doctype html>"),
                    "{path}: {}",
                    &body[..60]
                );
            } else {
                assert!(kind.starts_with("application/json"), "{path}: {kind}");
                serde_json::from_str::<Value>(&body)
                    .unwrap_or_else(|e| panic!("{path}: {e}: {}", &body[..60]));
            }
        }
    }
}
