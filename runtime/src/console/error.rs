//! What the console answers when it cannot do what was asked: an HTML page with the status
//! (4xx for anything a request got wrong, 503 when the store fails) and what was wrong.

use axum::http::{StatusCode, Uri};

use crate::api::ApiError;
use crate::store::StoreError;

/// A refused or failed console request, shown as a page.
#[derive(Debug, Clone)]
pub struct ConsoleError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ConsoleError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ConsoleError {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::new(e.status(), e.message())
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        ConsoleError::from(ApiError::from(e))
    }
}

/// Any other path under `/ui`: 404.
pub async fn not_found(uri: Uri) -> ConsoleError {
    let path: String = uri.path().chars().take(128).collect();
    ConsoleError::not_found(format!("the console has no page at {path}"))
}
