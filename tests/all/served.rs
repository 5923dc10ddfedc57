//! A `sluice serve` node as a child process on 127.0.0.1 port 0, with its own data dir,
//! cache dir and tokens; and a small HTTP client for the tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::guest;

/// Tokens a served test node accepts, by what they may do.
pub struct TestTokens {
    /// `start:*`, `read`, `cancel`, `operate`, `publish:*`.
    pub all: String,
    /// `read` only.
    pub read: String,
    /// `start:hello` only.
    pub hello: String,
}

/// A running `sluice serve` child.
pub struct Served {
    /// The child process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its tokens.
    pub tokens: TestTokens,
    /// Lines the node printed on stderr, as they come.
    pub stderr: mpsc::Receiver<String>,
}

/// Write a config in `dir` registering the guests `flows`, with `extra` TOML on top and
/// tokens for every test role; returns it with the tokens.
pub fn served_config(dir: &Path, flows: &[&str], extra: &str) -> (PathBuf, TestTokens) {
    served_config_as(dir, "", flows, extra)
}

/// [`served_config`] with `node_keys` in its `[node]` table (`identity = "PartyA"`…).
pub fn served_config_as(
    dir: &Path,
    node_keys: &str,
    flows: &[&str],
    extra: &str,
) -> (PathBuf, TestTokens) {
    let (all, all_hash) = sluice::api::new_token();
    let (read, read_hash) = sluice::api::new_token();
    let (hello, hello_hash) = sluice::api::new_token();
    let mut text = format!(
        "{extra}\n[node]\n{node_keys}\ncache-dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\ngrace = \"20s\"\nbody-timeout = \"5s\"\n",
        dir.join("cache").display()
    );
    for (name, hash, perms) in [
        (
            "ops",
            &all_hash,
            r#""start:*", "read", "cancel", "operate", "publish:*""#,
        ),
        ("viewer", &read_hash, r#""read""#),
        ("greeter", &hello_hash, r#""start:hello""#),
    ] {
        text.push_str(&format!(
            "[[server.tokens]]\nname = \"{name}\"\nsha256 = \"{hash}\"\npermissions = [{perms}]\n"
        ));
    }
    for name in flows {
        text.push_str(&format!(
            "[[flows]]\nname = \"{name}\"\ncomponent = \"{}\"\n",
            guest(name).display()
        ));
    }
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("config written");
    (path, TestTokens { all, read, hello })
}

/// Start `sluice serve` with `config` on `data`; returns once it listens.
pub fn serve(config: &Path, data: &Path, tokens: TestTokens) -> Served {
    serve_with_env(config, data, tokens, &[])
}

/// [`serve`] with more environment variables (e.g. `SLUICE_TEST_CLOCK`).
pub fn serve_with_env(
    config: &Path,
    data: &Path,
    tokens: TestTokens,
    env: &[(&str, &Path)],
) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .envs(env.iter().copied())
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (url_tx, url_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("sluice serving on ") {
                let _ = url_tx.send(url.to_string());
            }
        }
    });
    let stderr = child.stderr.take().expect("piped stderr");
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let url = match url_rx.recv_timeout(Duration::from_secs(180)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            let said: Vec<String> = err_rx.try_iter().collect();
            panic!("sluice serve never listened; stderr:\n{}", said.join("\n"));
        }
    };
    Served {
        child,
        url,
        tokens,
        stderr: err_rx,
    }
}

impl Served {
    /// `method path` with `token` and `body`; the status and the JSON (or text) body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut request = client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                // Say how the node was, not only that it did not answer.
                let said: Vec<String> = self.stderr.try_iter().collect();
                let tail = said[said.len().saturating_sub(30)..].join("\n");
                panic!(
                    "the node at {} did not answer {path}: {e:?}; its process: {}; the last of its stderr:\n{tail}",
                    self.url,
                    std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
                        .ok()
                        .and_then(|s| s
                            .lines()
                            .find(|l| l.starts_with("State:"))
                            .map(str::to_string))
                        .unwrap_or_else(|| "gone".into())
                )
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// `GET path` with the all-powerful token.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let token = self.tokens.all.clone();
        self.call(reqwest::Method::GET, path, Some(&token), None)
            .await
    }

    /// `POST path` with the all-powerful token.
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let token = self.tokens.all.clone();
        self.call(reqwest::Method::POST, path, Some(&token), Some(body))
            .await
    }

    /// The node's OS thread count now.
    pub fn threads(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the node's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Threads line")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the `sluice` CLI against `node` (its URL and full token from the environment).
pub fn cli(node: &Served, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_NODE", &node.url)
        .env("SLUICE_TOKEN", &node.tokens.all)
        .env_remove("RUST_LOG")
        .output()
        .expect("sluice runs")
}

/// Start `n` instances, 32 requests at a time: `request(i)` names the node, the path (with
/// its `?id=`) and the JSON body of each. Every one must be accepted (200 or 202).
pub async fn start_many<'a>(n: usize, request: impl Fn(usize) -> (&'a Served, String, String)) {
    use futures::StreamExt;
    futures::stream::iter(0..n)
        .map(|i| {
            let (node, path, body) = request(i);
            async move {
                let (status, answer) = node.post(&path, &body).await;
                assert!(
                    status == 202 || status == 200,
                    "start {i} ({path}): {status} {answer}"
                );
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}
