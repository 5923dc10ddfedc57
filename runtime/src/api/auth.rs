//! Bearer tokens: kept as SHA-256 hashes, compared in constant time, never logged. A
//! request without a known token gets 401; with a token that lacks the permission, 403;
//! in both cases before anything is started or changed.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::ApiError;
use crate::config::TokenConfig;
use crate::model::Permission;

/// One configured token: its hash and what it may do.
#[derive(Debug, Clone)]
struct Token {
    name: String,
    hash: [u8; 32],
    permissions: Vec<Permission>,
}

/// The node's tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Token>);

impl Tokens {
    /// The tokens of a validated `[server]` section (bad entries are skipped: validation
    /// refused them at load).
    pub fn from_config(tokens: &[TokenConfig]) -> Self {
        Tokens(
            tokens
                .iter()
                .filter_map(|t| {
                    let bytes = hex::decode(&t.sha256).ok()?;
                    let hash: [u8; 32] = bytes.try_into().ok()?;
                    let permissions = t
                        .permissions
                        .iter()
                        .filter_map(|p| p.parse().ok())
                        .collect();
                    Some(Token {
                        name: t.name.clone(),
                        hash,
                        permissions,
                    })
                })
                .collect(),
        )
    }

    /// The caller presenting `token`, if it is known (compared as [`Tokens`] always is).
    pub fn authenticate(&self, token: &str) -> Option<Caller> {
        self.caller(token.trim()).map(|t| Caller {
            name: t.name.clone(),
            permissions: t.permissions.clone(),
        })
    }

    /// Who presents `token`, if anyone. Every configured hash is compared, in constant time,
    /// so the answer's timing says nothing about how close a guess was.
    fn caller(&self, token: &str) -> Option<&Token> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for t in &self.0 {
            if bool::from(t.hash.ct_eq(&hash)) {
                found = Some(t);
            }
        }
        found
    }
}

/// A new random token and the hex SHA-256 to put in the config.
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("slc_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

/// The authenticated caller of a request: extracting it answers 401 without a known token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name in the config.
    pub name: String,
    permissions: Vec<Permission>,
}

impl Caller {
    /// 403 unless the caller's token holds `needed`.
    pub fn require(&self, needed: Permission) -> Result<(), ApiError> {
        if self.permissions.iter().any(|p| p.covers(&needed)) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token `{}` lacks the permission `{needed}`", self.name),
        ))
    }

    /// Whether the caller holds `needed`.
    pub fn may(&self, needed: &Permission) -> bool {
        self.permissions.iter().any(|p| p.covers(needed))
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |message: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message.to_string(),
            )
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("no token: send `Authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let known = state
            .tokens
            .caller(token.trim())
            .ok_or_else(|| unauthorized("unknown token"))?;
        Ok(Caller {
            name: known.name.clone(),
            permissions: known.permissions.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let (token, hash) = new_token();
        let tokens = Tokens::from_config(&[TokenConfig {
            name: "ops".into(),
            sha256: hash.clone(),
            permissions: vec!["read".into()],
        }]);
        assert_eq!(tokens.caller(&token).map(|t| t.name.as_str()), Some("ops"));
        assert!(tokens.caller(&hash).is_none(), "the hash is not a token");
        assert!(tokens.caller("slc_guess").is_none());
    }
}
