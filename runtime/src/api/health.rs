//! Liveness, readiness, metrics and the OpenAPI document: open to any caller that can
//! reach the node (loopback by default), for probes and scrapers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::views::Done;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "node",
    responses((status = 200, description = "Up", body = Done)))]
pub async fn healthz() -> Json<Done> {
    Json(Done {
        message: "ok".into(),
    })
}

/// The node takes work: it recovered its store and is not draining.
#[utoipa::path(get, path = "/readyz", tag = "node",
    responses(
        (status = 200, description = "Ready", body = Done),
        (status = 503, description = "Draining", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<Arc<ApiState>>) -> Result<Json<Done>, ApiError> {
    if state.draining() {
        return Err(ApiError::draining());
    }
    Ok(Json(Done {
        message: "ready".into(),
    }))
}

/// The node's metrics, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.node.render_metrics(),
    )
        .into_response()
}

/// This API's OpenAPI document, generated from the code.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "node",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi(State(state): State<Arc<ApiState>>) -> Response {
    match state.openapi.get() {
        Some(doc) => ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response(),
        None => ApiError::unavailable("the document is not built yet").into_response(),
    }
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such route; see /v1/openapi.json",
    )
}

/// A known path with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method; see /v1/openapi.json",
    )
}
