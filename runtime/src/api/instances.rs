//! Starting instances, reading them (status, result long-poll, journal, children, list), and
//! cancelling them.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody, body_rejected, rejected};
use super::views::{
    CancelView, EntryView, InstancePage, InstanceView, ListParams, OutcomeView, StartParams,
    WaitParams, latest_progress,
};
use crate::model::{Permission, Priority, StartRequest};
use crate::node::CancelError;
use crate::store::{InstanceRecord, ListQuery, Status};

/// The longest a request may wait for an outcome.
const MAX_WAIT: Duration = Duration::from_secs(3600);

pub(super) fn path_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(value) = path.map_err(|e| rejected(&e, e.status()))?;
    Ok(value)
}

/// An instance id as the API reads it: 1 to 256 of `A-Z a-z 0-9 . _ - ~` (the node itself
/// writes `~` in the ids of deep descendants, see `model::ids`).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    check_id_chars(
        id,
        |b| matches!(b, b'.' | b'_' | b'-' | b'~'),
        "A-Z a-z 0-9 . _ - ~",
    )
}

/// An id a caller chooses for a new instance: 1 to 256 of `A-Z a-z 0-9 . _ -` (`~` is
/// kept for the ids the node derives).
pub fn check_new_id(id: &str) -> Result<(), ApiError> {
    check_id_chars(id, |b| matches!(b, b'.' | b'_' | b'-'), "A-Z a-z 0-9 . _ -")
}

fn check_id_chars(id: &str, other: fn(u8) -> bool, allowed: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || other(b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "malformed instance id `{}`: use 1 to 256 of {allowed}",
            id.chars().take(64).collect::<String>()
        )))
    }
}

pub(super) fn wait_of(wait: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = wait else { return Ok(None) };
    let d = humantime::parse_duration(text).map_err(|e| {
        ApiError::bad_request(format!(
            "wait = `{text}` is not a duration ({e}); write it like 500ms or 10s"
        ))
    })?;
    if d > MAX_WAIT {
        return Err(ApiError::bad_request(format!(
            "wait = `{text}`: at most 1h"
        )));
    }
    Ok(Some(d))
}

fn location(id: &str) -> String {
    format!("/v1/instances/{id}")
}

/// 202 with the instance's `Location`: it has not ended yet.
pub fn accepted(id: &str) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(OutcomeView::running(id))).into_response();
    if let Ok(value) = location(id).parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A start's priority by its name: `normal` (also when absent) or `high`.
pub(crate) fn priority_of(name: Option<&str>) -> Result<Priority, ApiError> {
    match name {
        None | Some("normal") => Ok(Priority::Normal),
        Some("high") => Ok(Priority::High),
        Some(other) => Err(ApiError::bad_request(format!(
            "priority = `{other}`: use normal or high"
        ))),
    }
}

/// Start an instance of `flow` with the request body as its input.
#[utoipa::path(
    post, path = "/v1/flows/{flow}/start", tag = "instances",
    params(("flow" = String, Path, description = "Flow name"), StartParams),
    request_body(content = serde_json::Value, description = "The input (JSON); empty means null", content_type = "application/json"),
    responses(
        (status = 200, description = "Ended within `wait`", body = OutcomeView),
        (status = 202, description = "Started; poll its Location", body = OutcomeView),
        (status = 400, description = "Malformed JSON, id or parameter", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not start this flow", body = ErrorBody),
        (status = 404, description = "Unknown flow", body = ErrorBody),
        (status = 413, description = "Input over the flow's limit", body = ErrorBody),
        (status = 429, description = "The pool's queue is full", body = ErrorBody),
        (status = 503, description = "Draining", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn start(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    flow: Result<Path<String>, PathRejection>,
    params: Result<Query<StartParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let flow = path_of(flow)?;
    caller.require(Permission::Start(Some(flow.clone())))?;
    let Query(params) = params.map_err(|e| rejected(&e, e.status()))?;
    if state.draining() {
        return Err(ApiError::draining());
    }
    let wait = wait_of(params.wait.as_deref())?;
    let priority = priority_of(params.priority.as_deref())?;
    let body = body.map_err(|e| body_rejected(&e))?;
    let input = if body.is_empty() {
        b"null".to_vec()
    } else {
        serde_json::from_slice::<serde_json::Value>(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
        body.to_vec()
    };
    let mut request = StartRequest::rpc(flow, input, caller.name.clone()).with_priority(priority);
    if let Some(id) = params.id {
        check_new_id(&id)?;
        request = request.with_id(id);
    }
    let Some(wait) = wait else {
        let handle = state.node.start(request).await?;
        return Ok(accepted(handle.id()));
    };
    let handle = state.node.start_awaited(request).await?;
    let id = handle.id().to_string();
    // Waiting holds no pool slot and no thread: only this request's task awaits.
    match tokio::time::timeout(wait, handle.outcome()).await {
        Ok(outcome) => Ok(Json(OutcomeView::ended(&id, &outcome)).into_response()),
        Err(_) => Ok(accepted(&id)),
    }
}

/// The record of `id`, once anything queued of it is committed.
pub(crate) async fn record_of(state: &ApiState, id: &str) -> Result<InstanceRecord, ApiError> {
    check_id(id)?;
    let journal = state.node.journal();
    if let Some(record) = journal.store().record(id)? {
        return Ok(record);
    }
    // A child's record may still be queued: once committed, the store has it.
    journal.sync().await?;
    journal
        .store()
        .record(id)?
        .ok_or_else(|| ApiError::unknown_instance(id))
}

/// An instance: status, flow, pool, origin, parent, progress step and outcome.
#[utoipa::path(
    get, path = "/v1/instances/{id}", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The instance", body = InstanceView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<InstanceView>, ApiError> {
    caller.require(Permission::Read)?;
    let id = path_of(id)?;
    let record = record_of(&state, &id).await?;
    let journal = state.node.journal().store().journal(&id)?;
    Ok(Json(InstanceView::of(&record, latest_progress(&journal))))
}

/// An instance's outcome; with `wait`, held open until it ends or the wait is over.
#[utoipa::path(
    get, path = "/v1/instances/{id}/result", tag = "instances",
    params(("id" = String, Path, description = "Instance id"), WaitParams),
    responses(
        (status = 200, description = "It ended", body = OutcomeView),
        (status = 202, description = "Not ended yet (or held in the hospital)", body = OutcomeView),
        (status = 400, description = "Malformed id or wait", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn result(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Permission::Read)?;
    let id = path_of(id)?;
    let Query(params) = params.map_err(|e| rejected(&e, e.status()))?;
    let wait = wait_of(params.wait.as_deref())?;
    let record = record_of(&state, &id).await?;
    if let Some(outcome) = record.outcome() {
        return Ok(Json(OutcomeView::ended(&id, &outcome)).into_response());
    }
    let Some(wait) = wait else {
        return Ok(pending(&record));
    };
    let ended = state.node.services().outcome_of(&id);
    match tokio::time::timeout(wait, ended).await {
        Ok(outcome) => Ok(Json(OutcomeView::ended(&id, &outcome)).into_response()),
        Err(_) => Ok(pending(&record)),
    }
}

fn pending(record: &InstanceRecord) -> Response {
    let mut response = accepted(&record.id);
    if record.status == Status::Hospital {
        let view = OutcomeView {
            status: "held".into(),
            error: record.message.clone(),
            ..OutcomeView::running(&record.id)
        };
        response = (StatusCode::ACCEPTED, Json(view)).into_response();
    }
    response
}

/// An instance's journal: every host call with its arguments and answer, in order.
#[utoipa::path(
    get, path = "/v1/instances/{id}/journal", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The journal", body = Vec<EntryView>),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn journal(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<EntryView>>, ApiError> {
    caller.require(Permission::Read)?;
    let id = path_of(id)?;
    record_of(&state, &id).await?;
    let entries = state.node.journal().store().journal(&id)?;
    Ok(Json(entries.into_iter().map(EntryView::from).collect()))
}

/// The instances an instance started.
#[utoipa::path(
    get, path = "/v1/instances/{id}/children", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Its children, oldest first", body = Vec<InstanceView>),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn children(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<InstanceView>>, ApiError> {
    caller.require(Permission::Read)?;
    let id = path_of(id)?;
    record_of(&state, &id).await?;
    Ok(Json(children_of(&state, &id)?))
}

/// The instances `id` started, oldest first.
pub(crate) fn children_of(state: &ApiState, id: &str) -> Result<Vec<InstanceView>, ApiError> {
    let query = ListQuery {
        parent: Some(id.to_string()),
        limit: 100_000,
        ..ListQuery::default()
    };
    let found = state.node.journal().store().list(&query)?;
    Ok(found
        .iter()
        .map(|(_, r)| InstanceView::of(r, None))
        .collect())
}

/// Instances, filtered, oldest first, a page at a time.
#[utoipa::path(
    get, path = "/v1/instances", tag = "instances",
    params(ListParams),
    responses(
        (status = 200, description = "A page of instances", body = InstancePage),
        (status = 400, description = "A malformed filter", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<InstancePage>, ApiError> {
    caller.require(Permission::Read)?;
    let Query(params) = params.map_err(|e| rejected(&e, e.status()))?;
    Ok(Json(list_page(&state, params)?))
}

/// A time parameter (RFC 3339) as unix ms.
fn unix_ms_of(name: &str, text: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
        ApiError::bad_request(format!(
            "{name} = `{}` is not a time ({e}); write it like 2026-11-30T08:00:00Z",
            text.chars().take(64).collect::<String>()
        ))
    })?;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(Some(ms))
}

/// A page of the instances `params` asks for (filters, cursor, limit checked).
pub(crate) fn list_page(state: &ApiState, params: ListParams) -> Result<InstancePage, ApiError> {
    let status = match params.status.as_deref() {
        None => None,
        Some("running") => Some(Status::Running),
        Some("completed") => Some(Status::Completed),
        Some("failed") => Some(Status::Failed),
        Some("held") => Some(Status::Hospital),
        Some("cancelled") => Some(Status::Cancelled),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status = `{other}`: use running, completed, failed, held or cancelled"
            )));
        }
    };
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit = {limit}: use 1 to 1000"
        )));
    }
    for id in [&params.parent, &params.root].into_iter().flatten() {
        check_id(id)?;
    }
    let query = ListQuery {
        flow: params.flow,
        status,
        pool: params.pool,
        parent: params.parent,
        root: params.root,
        after: params.cursor,
        created_from: unix_ms_of("since", params.since.as_deref())?,
        created_until: unix_ms_of("until", params.until.as_deref())?,
        limit: limit + 1,
    };
    let mut found = state.node.journal().store().list(&query)?;
    let more = found.len() > limit;
    found.truncate(limit);
    Ok(InstancePage {
        next_cursor: if more {
            found.last().map(|(n, _)| *n)
        } else {
            None
        },
        instances: found
            .iter()
            .map(|(_, r)| InstanceView::of(r, None))
            .collect(),
    })
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        let (status, code) = match &e {
            CancelError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown-instance"),
            CancelError::Ended { .. } => (StatusCode::CONFLICT, "conflict"),
            CancelError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Cancel an instance and all its unfinished descendants: each ends as `cancelled`, durably,
/// before anything of them is stopped; waiting parents see `flow-error.cancelled`.
#[utoipa::path(
    post, path = "/v1/instances/{id}/cancel", tag = "instances",
    params(("id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "Cancelled, with how many instances", body = CancelView),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not cancel", body = ErrorBody),
        (status = 404, description = "Unknown instance", body = ErrorBody),
        (status = 409, description = "It has already ended", body = ErrorBody),
        (status = 503, description = "The store failed; nothing was cancelled", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn cancel(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<CancelView>, ApiError> {
    caller.require(Permission::Cancel)?;
    let id = path_of(id)?;
    check_id(&id)?;
    let cancelled = state.node.cancel(&id).await?;
    tracing::info!(caller = %caller.name, "cancelled {id}: {cancelled} instance(s)");
    Ok(Json(CancelView { id, cancelled }))
}
