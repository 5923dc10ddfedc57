//! Requests to peers over HTTP: open a session, deliver messages. One attempt each; the
//! callers retry what failed for a reason that may pass.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::Link;
use crate::model::{Delivery, OpenSession, Opened, Receipt};

/// How long one request may take before it counts as failed (and is retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A peer's answer that no retry changes: a 4xx, with the peer's JSON error.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{party} refused: {message} ({status} {code})")]
pub struct Refused {
    /// Who refused.
    pub party: String,
    /// The HTTP status.
    pub status: u16,
    /// The error's stable code (`unauthorized`, `forbidden`, `no-responder`…).
    pub code: String,
    /// The peer's message.
    pub message: String,
}

/// Why a request to a peer failed.
#[derive(Debug, Clone, Error)]
pub enum DeliveryError {
    /// It may work later: the peer is down, unreachable, draining or overloaded.
    #[error("{party} unreachable: {why}")]
    Unreachable { party: String, why: String },
    /// It will not: the peer refused the request.
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// The HTTP client of a node's peers.
#[derive(Debug, Clone)]
pub struct Client(reqwest::Client);

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client with this module's timeouts.
    pub fn new() -> Self {
        Client(
            reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .unwrap_or_default(),
        )
    }

    /// Ask `link`'s node to start the responder of a session.
    pub async fn open(&self, link: &Link, open: &OpenSession) -> Result<Opened, DeliveryError> {
        self.post(link, "/v1/peers/open", open).await
    }

    /// Hand `link`'s node messages; answered once it keeps them durably.
    pub async fn deliver(
        &self,
        link: &Link,
        delivery: &Delivery,
    ) -> Result<Receipt, DeliveryError> {
        self.post(link, "/v1/peers/messages", delivery).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        link: &Link,
        path: &str,
        body: &B,
    ) -> Result<T, DeliveryError> {
        let unreachable = |why: String| DeliveryError::Unreachable {
            party: link.party.clone(),
            why,
        };
        let response = self
            .0
            .post(format!("{}{path}", link.url))
            .bearer_auth(&link.token)
            .json(body)
            .send()
            .await
            .map_err(|e| unreachable(without_url(&e)))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<T>()
                .await
                .map_err(|e| unreachable(format!("an unreadable answer: {}", without_url(&e))));
        }
        let text = response.text().await.unwrap_or_default();
        // Timeouts, overload and a drain pass; any other 4xx is the peer's final word.
        let passes = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
        if passes {
            return Err(unreachable(format!("{status}: {}", text.trim())));
        }
        let error: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let field = |name: &str| error.get(name).and_then(|v| v.as_str()).map(str::to_string);
        Err(Refused {
            party: link.party.clone(),
            status: status.as_u16(),
            code: field("code").unwrap_or_else(|| "refused".into()),
            message: field("message").unwrap_or(text),
        }
        .into())
    }
}

/// A reqwest error's message without its URL (which names the peer already given).
fn without_url(e: &reqwest::Error) -> String {
    let mut why = e.to_string();
    if let Some(url) = e.url() {
        why = why.replace(&format!(" ({url})"), "");
        why = why.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    why
}
