//! API errors: a status, a stable `code` and a message naming what was wrong, as JSON.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::StartError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthorized`, `forbidden`, `bad-request`, `not-found`,
    /// `unknown-flow`, `unknown-instance`, `method-not-allowed`, `payload-too-large`,
    /// `unknown-pool`, `queue-full`, `conflict`, `draining`, `unavailable`, `store-unavailable`.
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
}

/// An error answer of the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.into(),
                message: message.into(),
            },
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// 404 for an instance id the node does not know.
    pub fn unknown_instance(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown-instance",
            format!("no instance `{id}` on this node"),
        )
    }

    /// 503 with `Retry-After`: the node is draining.
    pub fn draining() -> Self {
        ApiError {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "the node is draining and admits no new work; retry on its next start",
            )
        }
    }

    /// 503: the store failed.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What was wrong, for people.
    pub fn message(&self) -> &str {
        &self.body.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        let (status, code) = match &e {
            StartError::UnknownFlow { .. } => (StatusCode::NOT_FOUND, "unknown-flow"),
            StartError::Load { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "flow-not-loadable"),
            StartError::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "queue-full"),
            StartError::Limit { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            StartError::ShuttingDown => return Self::draining(),
            StartError::Meta { .. } => (StatusCode::BAD_REQUEST, "bad-request"),
            StartError::Store { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            StartError::StoreUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable")
            }
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(e.to_string())
    }
}

/// A request body that could not be read: 408 when it did not arrive within the server's
/// `body-timeout`, else as the extractor says (413 too large, 400 otherwise).
pub fn body_rejected(rejection: &axum::extract::rejection::BytesRejection) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "the request body did not arrive within the server's body-timeout",
            );
        }
        cause = e.source();
    }
    rejected(rejection, rejection.status())
}

/// What an axum extractor refused (a bad path, query or body), as an API error.
pub fn rejected(rejection: impl std::fmt::Display, status: StatusCode) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        _ => "bad-request",
    };
    let status = if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, code, rejection.to_string())
}
