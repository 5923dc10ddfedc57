//! `[peers.<party>]`: the other nodes this node's flows may hold sessions with, where each
//! listens, and how each side proves who it is.
//!
//! ```toml
//! [peers.PartyB]
//! url = "http://127.0.0.1:7466"      # PartyB's `sluice serve`
//! token-file = "secrets/to-b.token"  # what this node presents to PartyB (or `token-env`)
//! accepts = "9f2c…"                  # SHA-256 of what PartyB presents here (`sluice token`)
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One `[peers.<party>]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeerConfig {
    /// The peer's API base URL (`http://host:port`; TLS is a proxy's job for now).
    pub url: String,
    /// A file holding the token this node presents to the peer (relative to the config).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding that token, instead of a file.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Hex SHA-256 of the token the peer presents to this node; never the token itself.
    pub accepts: String,
}

impl PeerConfig {
    /// Check the URL, the hash and that exactly one token source is named.
    pub(super) fn validate(&self, party: &str, identity: &str) -> Result<(), String> {
        let at = format!("peers.{party}");
        if party.trim().is_empty() {
            return Err("peers: a party name must not be empty".into());
        }
        if party == identity {
            return Err(format!(
                "{at}: `{party}` is this node's own identity; sessions with it need no peer entry"
            ));
        }
        if !is_http_url(&self.url) {
            return Err(format!(
                "{at}.url = \"{}\": write it like \"http://127.0.0.1:7465\" (https is not built in yet: put a TLS proxy in front)",
                self.url
            ));
        }
        let hex_ok =
            self.accepts.len() == 64 && self.accepts.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex_ok {
            return Err(format!(
                "{at}.accepts: must be 64 hex digits (the SHA-256 of the token {party} presents, as `sluice token` prints it), never the token itself"
            ));
        }
        match (&self.token_file, &self.token_env) {
            (Some(_), Some(_)) => Err(format!(
                "{at}: set one of `token-file` and `token-env`, not both"
            )),
            (None, None) => Err(format!(
                "{at}: set `token-file` or `token-env`: the token this node presents to {party}"
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `url` is an `http://` URL with a host.
fn is_http_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|host| !host.is_empty())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::NodeConfig;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        NodeConfig::parse(text, Path::new("node.toml"), Path::new(".")).map_err(|e| e.to_string())
    }

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_peer_needs_a_url_a_hash_and_one_token_source() {
        let node = "[node]\nidentity = \"PartyA\"\n";
        let ok = parse(&format!(
            "{node}[peers.PartyB]\nurl = \"http://127.0.0.1:7466\"\ntoken-file = \"b.token\"\naccepts = \"{HASH}\"\n"
        ))
        .unwrap();
        assert_eq!(ok.peers["PartyB"].url, "http://127.0.0.1:7466");
        let e = parse(&format!(
            "{node}[peers.PartyB]\nurl = \"127.0.0.1:7466\"\ntoken-file = \"b\"\naccepts = \"{HASH}\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("peers.PartyB.url = \"127.0.0.1:7466\""), "{e}");
        let e = parse(&format!(
            "{node}[peers.PartyB]\nurl = \"http://h:1\"\ntoken-file = \"b\"\naccepts = \"slc_secret\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("peers.PartyB.accepts: must be 64 hex digits"),
            "{e}"
        );
        let e = parse(&format!(
            "{node}[peers.PartyB]\nurl = \"http://h:1\"\naccepts = \"{HASH}\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("set `token-file` or `token-env`"), "{e}");
        let e = parse(&format!(
            "{node}[peers.PartyA]\nurl = \"http://h:1\"\ntoken-env = \"T\"\naccepts = \"{HASH}\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("this node's own identity"), "{e}");
        let e = parse(&format!(
            "{node}[peers.PartyB]\nurl = \"http://h:1\"\ntoken-env = \"T\"\naccepts = \"{HASH}\"\ntoekn = 1\n"
        ))
        .unwrap_err();
        assert!(e.contains("toekn"), "{e}");
    }
}
