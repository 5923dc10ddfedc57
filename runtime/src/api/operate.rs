//! What operators do: the hospital live, pools and flows, and draining the node.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody, body_rejected, rejected};
use super::instances::check_id;
use super::views::{Done, FlowView, InstanceView, PoolResize, PoolView, RetryBody};
use crate::config;
use crate::model::Permission;
use crate::node::HospitalError;

impl From<HospitalError> for ApiError {
    fn from(e: HospitalError) -> Self {
        let (status, code) = match &e {
            HospitalError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown-instance"),
            HospitalError::NotHeld { .. } => (StatusCode::CONFLICT, "conflict"),
            HospitalError::Component(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            HospitalError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Instances held in the flow hospital, with why.
#[utoipa::path(
    get, path = "/v1/hospital", tag = "hospital",
    responses(
        (status = 200, description = "Held instances, oldest first", body = Vec<InstanceView>),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn hospital(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    caller.require(Permission::Read)?;
    let held = state.node.held()?;
    Ok(Json(
        held.iter().map(|r| InstanceView::of(r, None)).collect(),
    ))
}

/// Run a held instance again from its journal, now; optionally on another build.
#[utoipa::path(
    post, path = "/v1/hospital/{id}/retry", tag = "hospital",
    params(("id" = String, Path, description = "Instance id")),
    request_body(content = RetryBody, description = "Optional: another build", content_type = "application/json"),
    responses(
        (status = 200, description = "It runs again", body = Done),
        (status = 400, description = "Malformed id or body, or not a component", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not operate", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
        (status = 409, description = "Not held", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Done>, ApiError> {
    caller.require(Permission::Operate)?;
    let Path(id) = id.map_err(|e| rejected(&e, e.status()))?;
    check_id(&id)?;
    let body = body.map_err(|e| body_rejected(&e))?;
    let retry: RetryBody = if body.is_empty() {
        RetryBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a retry request: {e}")))?
    };
    let component = retry.component.map(PathBuf::from);
    state.node.retry(&id, component.as_deref()).await?;
    tracing::info!(caller = %caller.name, "retried {id} from the hospital");
    Ok(Json(Done {
        message: format!("{id} runs again from its journal"),
    }))
}

/// End a held instance as failed.
#[utoipa::path(
    post, path = "/v1/hospital/{id}/kill", tag = "hospital",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "It ended as failed", body = Done),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not operate", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
        (status = 409, description = "Not held", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn kill(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Done>, ApiError> {
    caller.require(Permission::Operate)?;
    let Path(id) = id.map_err(|e| rejected(&e, e.status()))?;
    check_id(&id)?;
    state.node.kill(&id).await?;
    tracing::info!(caller = %caller.name, "killed {id} in the hospital");
    Ok(Json(Done {
        message: format!("{id} ended as failed (killed by an operator)"),
    }))
}

/// Every pool with its live figures.
#[utoipa::path(
    get, path = "/v1/pools", tag = "node",
    responses(
        (status = 200, description = "The pools", body = Vec<PoolView>),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn pools(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Vec<PoolView>>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(
        state.node.pools().iter().map(|p| PoolView::of(p)).collect(),
    ))
}

/// Change a pool's size and queue capacity live.
#[utoipa::path(
    patch, path = "/v1/pools/{name}", tag = "node",
    params(("name" = String, Path, description = "Pool name")),
    request_body(content = PoolResize, description = "The new size and/or queue capacity", content_type = "application/json"),
    responses(
        (status = 200, description = "The pool with its new figures", body = PoolView),
        (status = 400, description = "Malformed body, or a size or queue out of range", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not operate", body = ErrorBody),
        (status = 404, description = "Unknown pool", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn resize_pool(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PoolView>, ApiError> {
    caller.require(Permission::Operate)?;
    let Path(name) = name.map_err(|e| rejected(&e, e.status()))?;
    let body = body.map_err(|e| body_rejected(&e))?;
    let resize: PoolResize = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a pool resize: {e}")))?;
    let Some(pool) = state.node.pools().get(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-pool",
            format!("no pool is named `{name}`"),
        ));
    };
    // The config's rules, so a resize cannot make a pool the config would refuse.
    let checked = |value: Option<u64>, check: fn(i64) -> Result<(), String>| {
        value
            .map(|n| {
                check(i64::try_from(n).unwrap_or(i64::MAX))
                    .map(|()| n as usize)
                    .map_err(ApiError::bad_request)
            })
            .transpose()
    };
    let size = checked(resize.size, config::check_pool_size)?;
    let queue = checked(resize.queue, config::check_pool_queue)?;
    if size.is_none() && queue.is_none() {
        return Err(ApiError::bad_request(
            "the body names neither `size` nor `queue`",
        ));
    }
    pool.resize(size, queue);
    tracing::info!(caller = %caller.name, pool = %name, ?size, ?queue, "pool resized");
    Ok(Json(PoolView::of(pool)))
}

/// Every flow the node knows by name.
#[utoipa::path(
    get, path = "/v1/flows", tag = "node",
    responses(
        (status = 200, description = "The flows", body = Vec<FlowView>),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn flows(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Vec<FlowView>>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(flow_views(&state)))
}

/// Every flow the node knows by name, with its build and instances in flight.
pub(crate) fn flow_views(state: &ApiState) -> Vec<FlowView> {
    let listed = state.node.services().registry.list();
    listed
        .into_iter()
        .map(|l| FlowView {
            name: l.name,
            pool: l.pool,
            component: l.flow.as_ref().map(|f| f.component.hash.clone()),
            in_flight: l
                .flow
                .as_ref()
                .map_or(0, |f| f.in_flight.load(Ordering::Relaxed)),
        })
        .collect()
}

/// Stop admitting work, let running instances park, commit, and stop the node.
#[utoipa::path(
    post, path = "/v1/drain", tag = "node",
    responses(
        (status = 202, description = "Draining", body = Done),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not operate", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn drain(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    caller.require(Permission::Operate)?;
    tracing::info!(caller = %caller.name, "drain requested over the API");
    state.start_drain();
    Ok((
        StatusCode::ACCEPTED,
        Json(Done {
            message: "draining: new work is refused; the node stops once running instances park"
                .into(),
        }),
    ))
}
