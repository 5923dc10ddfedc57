//! Publishing an event on a topic from outside the node.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody, body_rejected};
use super::instances::path_of;
use crate::model::Permission;
use crate::model::names::check_topic;

/// Largest event payload published over the API.
const MAX_PAYLOAD: usize = 1 << 20;

/// A published event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishedView {
    /// The event's id (`api-<ulid>`).
    pub id: String,
    /// Its topic.
    pub topic: String,
}

/// A topic from a path: checked, so a bad name is a 400 naming the rule.
pub(super) fn topic_of(topic: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let topic = path_of(topic)?;
    check_topic(&topic).map_err(ApiError::bad_request)?;
    Ok(topic)
}

/// Publish the body (JSON) as an event on `topic`: durable when answered, then offered to
/// the topic's `wait-event` waiters (one takes it), its event triggers (each starts one
/// instance) and its followers.
#[utoipa::path(
    post, path = "/v1/topics/{topic}/publish", tag = "triggers",
    params(("topic" = String, Path, description = "Topic: 1 to 128 of A-Z a-z 0-9 . _ - :")),
    request_body(content = serde_json::Value, description = "The event's payload (JSON); empty means null", content_type = "application/json"),
    responses(
        (status = 200, description = "Published", body = PublishedView),
        (status = 400, description = "A malformed topic or body", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not publish on this topic", body = ErrorBody),
        (status = 413, description = "A payload over 1 MiB", body = ErrorBody),
        (status = 503, description = "Draining, or the store failed", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn publish(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    topic: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PublishedView>, ApiError> {
    let topic = topic_of(topic)?;
    caller.require(Permission::Publish(Some(topic.clone())))?;
    if state.draining() {
        return Err(ApiError::draining());
    }
    let body = body.map_err(|e| body_rejected(&e))?;
    if body.len() > MAX_PAYLOAD {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!(
                "an event's payload is at most 1 MiB; this one is {} bytes",
                body.len()
            ),
        ));
    }
    let payload = if body.is_empty() {
        b"null".to_vec()
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        body.to_vec()
    };
    let id = state.node.publish(&topic, payload).await?;
    tracing::debug!(caller = %caller.name, "published {id} on {topic}");
    Ok(Json(PublishedView { id, topic }))
}
