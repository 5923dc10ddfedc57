//! The CLI's side of a served node: where it is, the token, and JSON over HTTP. Errors
//! carry the node's `code` and message.

use anyhow::{Context, anyhow};
use serde_json::Value;

/// Which node to talk to, and as whom.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The node's URL.
    #[arg(long, env = "SLUICE_NODE", default_value = "http://127.0.0.1:7465")]
    pub node: String,
    /// An API token (made with `sluice token`).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// A node's API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A JSON answer and its status.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Client {
    /// A client of the node `args` names.
    pub fn new(args: &NodeArgs) -> anyhow::Result<Self> {
        Ok(Client {
            http: reqwest::Client::builder()
                .build()
                .context("cannot build the HTTP client")?,
            base: args.node.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    /// `GET path` (with the query in `path`).
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST path` with `body` as JSON (none when `None`).
    pub async fn post(&self, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Answer> {
        let mut request = self.http.post(self.url(path));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        self.send(request).await
    }

    /// `PATCH path` with `body` as JSON.
    pub async fn patch(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Answer> {
        let request = self
            .http
            .patch(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(request).await
    }

    /// `GET path` as a stream of Server-Sent Events; an error status fails as any call.
    pub async fn events(&self, path: &str) -> anyhow::Result<super::sse::SseReader> {
        let mut request = self
            .http
            .get(self.url(path))
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let code = body.get("code").and_then(Value::as_str).unwrap_or("error");
            let message = body.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(anyhow!("the node answered {status} {code}: {message}"));
        }
        Ok(super::sse::SseReader::new(response))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, mut request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the node at {}", self.base))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .context("cannot read the node's answer")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let code = body.get("code").and_then(Value::as_str).unwrap_or("error");
            let message = body
                .get("message")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| body.to_string());
            return Err(anyhow!("the node answered {status} {code}: {message}"));
        }
        Ok(Answer { status, body })
    }
}

/// Percent-encode one path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
