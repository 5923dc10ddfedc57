//! `[server]`: where `sluice serve` listens, how long it drains, and its API tokens.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::{HumanDuration, Permission};

/// Where `sluice serve` listens by default: loopback only, on a port no common service uses.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7465";

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerSection {
    /// Address and port, e.g. "127.0.0.1:7465" (port 0: any free port).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// How long a drain (SIGTERM, or the API) waits for running instances to park.
    #[serde(default = "default_grace")]
    pub grace: HumanDuration,
    /// How long a request may take to send its body; a body that never finishes is
    /// answered 408 then, and every other request is served meanwhile.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
    /// API tokens, stored as SHA-256 hashes (make one with `sluice token`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            grace: default_grace(),
            body_timeout: default_body_timeout(),
            tokens: Vec::new(),
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

fn default_grace() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

fn default_body_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

/// `[[server.tokens]]`: one API token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenConfig {
    /// Who holds it (logged with what it does; the token itself never is).
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// What it may do: `start:<flow>`, `start:*`, `read`, `cancel`, `operate`,
    /// `publish:<topic>`, `publish:*`.
    pub permissions: Vec<String>,
}

impl ServerSection {
    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|e| {
            format!(
                "server.listen = \"{}\": {e}; write it like \"127.0.0.1:7465\"",
                self.listen
            )
        })
    }

    /// Check the address, every hash and every permission.
    pub fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            let at = format!("server.tokens[{i}]");
            if token.name.is_empty() {
                return Err(format!("{at}.name: must not be empty"));
            }
            if !names.insert(token.name.as_str()) {
                return Err(format!(
                    "{at}.name = \"{}\": duplicate token name",
                    token.name
                ));
            }
            let hex_ok =
                token.sha256.len() == 64 && token.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok {
                return Err(format!(
                    "{at}.sha256: must be 64 hex digits (the SHA-256 of the token, as `sluice token` prints it), never the token itself"
                ));
            }
            for p in &token.permissions {
                p.parse::<Permission>()
                    .map_err(|e| format!("{at}.permissions: {e}"))?;
            }
        }
        Ok(())
    }
}
