//! The CLI works on the same database as the running server, with `--config` anywhere.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

async fn gateway() -> (Gateway, llmux_sim::SimHandle) {
    let sim = sim().await;
    let rest = format!(
        "{}{}",
        provider("simco", &format!("{}/v1", sim.base_url()), ""),
        endpoint("deepseek/deepseek-v3.2", "simco", "ok", "0.28", "0.42", "")
    );
    (Gateway::start("", &rest).await, sim)
}

fn chat() -> Value {
    json!({"model": "deepseek/deepseek-v3.2", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn config_is_accepted_before_or_after_subcommand_flags() {
    let (gw, _sim) = gateway().await;
    // After the subcommand's own flags (the harness appends --config).
    let after = gw.create_key("after", None);
    // Before the subcommand.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&gw.config)
        .args(["keys", "create", "--name", "before", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before: Value = serde_json::from_slice(&out.stdout).unwrap();
    // From the environment.
    let out = Command::new(BIN)
        .env("LLMUX_CONFIG", &gw.config)
        .args(["keys", "create", "--name", "env"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env_key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(env_key.starts_with("sk-llmux-v1-"));

    for k in [
        after.key.as_str(),
        before["key"].as_str().unwrap(),
        env_key.as_str(),
    ] {
        let r = gw.post("/api/v1/chat/completions", k, &chat()).await;
        assert_eq!(r.status(), 200, "a key made by the CLI works on the server");
    }

    let list = gw.cli(&["keys", "list", "--json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    for n in ["after", "before", "env"] {
        assert!(names.contains(&n));
    }
    // Keys are stored hashed: the listing never shows a key.
    assert!(!String::from_utf8_lossy(&gw.cli(&["keys", "list"]).stdout).contains(&after.key));
}

#[tokio::test(flavor = "multi_thread")]
async fn credits_added_by_the_cli_are_usable_at_once() {
    let (gw, _sim) = gateway().await;
    let key = gw.create_key("buyer", Some("0.000001"));
    // Too little for the worst case of a request without max_tokens.
    let r = gw.post("/api/v1/chat/completions", &key.key, &chat()).await;
    assert_eq!(r.status(), 402);
    let out = gw.cli(&["credits", "add", &key.account, "5", "--note", "top-up"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = std::time::Instant::now();
    loop {
        let r = gw.post("/api/v1/chat/completions", &key.key, &chat()).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "top-up not visible within a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_cli_input_fails_clearly() {
    let (gw, _sim) = gateway().await;
    let key = gw.create_key("k", None);
    for (args, needle) in [
        (vec!["credits", "add", &key.account, "-5"], "positive"),
        (
            vec!["credits", "add", &key.account, "lots"],
            "not a decimal",
        ),
        (
            vec!["credits", "add", "acct_missing", "5"],
            "does not exist",
        ),
        (vec!["keys", "disable", "0000"], "no key"),
        (
            vec![
                "keys",
                "create",
                "--name",
                "x",
                "--credits",
                "0.0000000000001",
            ],
            "precision",
        ),
    ] {
        let out = gw.cli(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--config", "/nonexistent/llmux.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/llmux.toml"));
}

/// The soft and hard "Max open files" limits of a process, from `/proc`.
#[cfg(target_os = "linux")]
fn open_files_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

/// Each proxied stream holds two sockets: a server started under the usual soft limit of
/// 1,024 open files raises it to the hard limit, as nginx and Go's runtime do.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn servers_raise_their_open_files_limit() {
    use std::io::BufRead;
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!("ulimit -Sn 256 && exec {BIN} sim --listen 127.0.0.1:0"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The sim says it listens once it has started (the limit is raised before that).
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let limits = open_files_limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening"), "{line}");
    let (soft, hard) = limits.expect("the process's limits");
    assert_ne!(
        hard, "256",
        "this machine's hard limit leaves nothing to raise"
    );
    assert_eq!(soft, hard, "soft limit not raised to the hard one");
}
