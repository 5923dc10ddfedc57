//! Sessions between nodes over the API: what peers call (`/v1/peers/open`,
//! `/v1/peers/messages`, authenticated by the peer's own token, not an API token), and the
//! peers as operators see them (`/v1/peers`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody, body_rejected};
use crate::model::{Delivery, OpenSession, Opened, Permission, Receipt};
use crate::node::PeerError;
use crate::peers::{PeerRefusal, PeerView};

impl From<PeerError> for ApiError {
    fn from(e: PeerError) -> Self {
        let message = e.to_string();
        match e {
            PeerError::Refused(PeerRefusal::WrongCredential { .. }) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            PeerError::Refused(PeerRefusal::NotAPeer { .. }) => {
                ApiError::new(StatusCode::FORBIDDEN, "not-a-peer", message)
            }
            PeerError::NoResponder { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "no-responder", message)
            }
            PeerError::BadRequest(_) => ApiError::bad_request(message),
            PeerError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            PeerError::Unavailable(_) => ApiError::unavailable(message),
        }
    }
}

/// The bearer token of a peer's request, and its JSON body.
fn peer_request<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, T), ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let token = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("no token: a peer sends `Authorization: Bearer <token>`"))?
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?
        .to_string();
    let body = body.map_err(|e| body_rejected(&e))?;
    let value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a peer request: {e}")))?;
    Ok((token, value))
}

/// A peer asks this node to start the responder of a session its flow opened.
#[utoipa::path(
    post, path = "/v1/peers/open", tag = "peers",
    request_body(content = serde_json::Value, description = "`{from, session, flow}`: the asking node, the session id, the initiating flow", content_type = "application/json"),
    responses(
        (status = 200, description = "The responder runs (started now or before): `{responder, flow}`", body = serde_json::Value),
        (status = 400, description = "A malformed request or session id", body = ErrorBody),
        (status = 401, description = "No token, or not the one configured for that peer", body = ErrorBody),
        (status = 403, description = "Not a configured peer", body = ErrorBody),
        (status = 404, description = "No flow here responds to the initiating flow", body = ErrorBody),
        (status = 409, description = "The responder's id is another instance's", body = ErrorBody),
        (status = 503, description = "Draining, a full queue or a store that cannot write: try again", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn open(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Opened>, ApiError> {
    let (token, open): (String, OpenSession) = peer_request(&headers, body)?;
    if state.draining() {
        return Err(ApiError::draining());
    }
    Ok(Json(state.node.peer_open(&token, open).await?))
}

/// A peer hands over messages (and session ends) for flows of this node; answered once
/// they are kept durably.
#[utoipa::path(
    post, path = "/v1/peers/messages", tag = "peers",
    request_body(content = serde_json::Value, description = "`{from, messages: [{session, to, seq, body}]}`", content_type = "application/json"),
    responses(
        (status = 200, description = "Kept: `{kept, refused}`", body = serde_json::Value),
        (status = 400, description = "A malformed request", body = ErrorBody),
        (status = 401, description = "No token, or not the one configured for that peer", body = ErrorBody),
        (status = 403, description = "Not a configured peer", body = ErrorBody),
        (status = 503, description = "The store cannot write: try again", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn messages(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>, ApiError> {
    let (token, delivery): (String, Delivery) = peer_request(&headers, body)?;
    Ok(Json(state.node.peer_deliver(&token, delivery).await?))
}

/// This node's peers: where each listens, whether it was reachable, its outbox depth.
#[utoipa::path(
    get, path = "/v1/peers", tag = "peers",
    responses(
        (status = 200, description = "The peers", body = [PeerView]),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Vec<PeerView>>, ApiError> {
    caller.require(Permission::Read)?;
    let node = state.node.clone();
    let views = tokio::task::spawn_blocking(move || node.peer_views())
        .await
        .map_err(|e| ApiError::unavailable(format!("the peers view failed: {e}")))?
        .map_err(|e| ApiError::unavailable(format!("the store cannot count the outboxes: {e}")))?;
    Ok(Json(views))
}
