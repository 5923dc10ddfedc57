//! URL triggers: a configured path and method start a flow with the request body as its
//! input, and answer with the flow's output (200), its failure (a JSON error), or, past
//! the trigger's `wait`, 202 with the instance's `Location`. A waiting request holds no
//! pool slot and no thread: only its own small task awaits the outcome.
//!
//! These routes are the operator's, not the API's: they are not in the OpenAPI document.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, body_rejected};
use super::instances::accepted;
use crate::config::HttpMethod;
use crate::model::{FlowError, Origin, StartRequest};
use crate::triggers::HttpTrigger;

/// The header naming the instance a URL trigger started.
pub const INSTANCE_HEADER: &str = "sluice-instance";

/// `router` with a route for every URL trigger of `state`.
pub fn add_routes(mut router: Router, state: &Arc<ApiState>) -> Router {
    for trigger in state.triggers.http() {
        let filter = match trigger.config.method {
            HttpMethod::Get => MethodFilter::GET,
            HttpMethod::Post => MethodFilter::POST,
            HttpMethod::Put => MethodFilter::PUT,
            HttpMethod::Patch => MethodFilter::PATCH,
            HttpMethod::Delete => MethodFilter::DELETE,
        };
        let path = trigger.config.path.get_ref().clone();
        let trigger = trigger.clone();
        let handler = move |state: State<Arc<ApiState>>,
                            caller: Result<Caller, ApiError>,
                            body: Result<Bytes, BytesRejection>| {
            let trigger = trigger.clone();
            async move { call(state, &trigger, caller, body).await }
        };
        router = router.route(&path, on(filter, handler).with_state(state.clone()));
    }
    router
}

/// Answer one request to `trigger`.
async fn call(
    State(state): State<Arc<ApiState>>,
    trigger: &HttpTrigger,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let figures = &trigger.state;
    match admit(&state, trigger, caller, body).await {
        Ok(response) => response,
        Err(e) => {
            figures.refused();
            e.into_response()
        }
    }
}

async fn admit(
    state: &ApiState,
    trigger: &HttpTrigger,
    caller: Result<Caller, ApiError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let config = &trigger.config;
    let name = config.name.get_ref().as_str();
    // Who calls is checked before anything else is looked at: 401/403 start nothing.
    if let Some(needed) = config.needed() {
        caller?.require(needed)?;
    }
    if trigger.state.paused() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "trigger-paused",
            format!("trigger `{name}` is paused; an operator resumes it"),
        ));
    }
    if state.draining() {
        return Err(ApiError::draining());
    }
    let body = body.map_err(|e| body_rejected(&e))?;
    let input = if body.is_empty() {
        b"null".to_vec()
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        body.to_vec()
    };
    let request = StartRequest {
        origin: Origin::Trigger(name.to_string()),
        ..StartRequest::rpc(config.flow.get_ref().clone(), input, "")
    }
    .with_priority(config.mode.into());
    trigger.state.fired(crate::model::unix_ms());
    let handle = state.node.start_awaited(request).await?;
    trigger.state.started();
    let id = handle.id().to_string();
    let Ok(outcome) = tokio::time::timeout(config.wait.0, handle.outcome()).await else {
        return Ok(with_instance(accepted(&id), &id));
    };
    let response = match outcome {
        Ok(output) => {
            let mut response = (StatusCode::OK, output).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => failed(&id, &error).into_response(),
    };
    Ok(with_instance(response, &id))
}

/// The answer of a flow that ended without output.
fn failed(id: &str, error: &FlowError) -> ApiError {
    let (status, code) = match error {
        FlowError::Failed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "flow-failed"),
        FlowError::Cancelled => (StatusCode::CONFLICT, "flow-cancelled"),
        FlowError::TimedOut => (StatusCode::GATEWAY_TIMEOUT, "flow-timed-out"),
        FlowError::Rejected(_) => (StatusCode::SERVICE_UNAVAILABLE, "flow-rejected"),
    };
    ApiError::new(status, code, format!("instance {id}: {error}"))
}

fn with_instance(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(INSTANCE_HEADER, value);
    }
    response
}
