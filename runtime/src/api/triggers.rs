//! The node's triggers: list them with their figures, pause and resume one.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::instances::path_of;
use super::views::rfc3339;
use crate::model::Permission;
use crate::triggers::TriggerState;

/// One trigger and its figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TriggerView {
    /// Its name.
    pub name: String,
    /// `http`, `event` or `schedule`.
    pub kind: String,
    /// The flow it starts.
    pub flow: String,
    /// What fires it: `POST /hooks/x`, `topic orders`, `cron 0 2 * * * (UTC)`.
    pub source: String,
    /// `active` or `paused`.
    pub state: String,
    /// Requests, events or fires it saw.
    pub fired: u64,
    /// Instances it started.
    pub started: u64,
    /// Starts or requests refused.
    pub refused: u64,
    /// Fires skipped (paused, overlap or missed-run policy).
    pub skipped: u64,
    /// Events waiting for its instance (event triggers).
    pub pending: u64,
    /// The last fire, RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<String>,
    /// The next fire, RFC 3339 UTC (schedules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<String>,
}

impl TriggerView {
    /// The view of one trigger's state now.
    pub fn of(state: &TriggerState) -> Self {
        let s = state.snapshot();
        TriggerView {
            name: s.name,
            kind: serde_json::to_value(s.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            flow: s.flow,
            source: s.source,
            state: s.state.into(),
            fired: s.fired,
            started: s.started,
            refused: s.refused,
            skipped: s.skipped,
            pending: s.pending,
            last_fire: s.last_fire_ms.map(rfc3339),
            next_fire: s.next_fire_ms.map(rfc3339),
        }
    }
}

pub(crate) async fn set_paused(
    state: &ApiState,
    name: &str,
    paused: bool,
) -> Result<Arc<TriggerState>, ApiError> {
    let found = state.triggers.set_paused(name, paused).await?;
    found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown-trigger",
            format!(
                "no trigger `{}` on this node",
                name.chars().take(64).collect::<String>()
            ),
        )
    })
}

/// Every trigger with its figures: last and next fire, counts, state.
#[utoipa::path(
    get, path = "/v1/triggers", tag = "triggers",
    responses(
        (status = 200, description = "The triggers, in the config's order", body = Vec<TriggerView>),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Vec<TriggerView>>, ApiError> {
    caller.require(Permission::Read)?;
    Ok(Json(
        state
            .triggers
            .all()
            .iter()
            .map(|t| TriggerView::of(t))
            .collect(),
    ))
}

/// Pause a trigger, durably (a restart keeps it paused): a URL trigger answers 503, an
/// event trigger lets events pass without starting anything, a schedule skips its fires.
/// Idempotent.
#[utoipa::path(
    post, path = "/v1/triggers/{name}/pause", tag = "triggers",
    params(("name" = String, Path, description = "Trigger name")),
    responses(
        (status = 200, description = "Paused", body = TriggerView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not operate", body = ErrorBody),
        (status = 404, description = "Unknown trigger", body = ErrorBody),
        (status = 503, description = "The store failed; nothing changed", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn pause(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<TriggerView>, ApiError> {
    caller.require(Permission::Operate)?;
    let name = path_of(name)?;
    let trigger = set_paused(&state, &name, true).await?;
    tracing::info!(caller = %caller.name, "trigger `{name}` paused");
    Ok(Json(TriggerView::of(&trigger)))
}

/// Resume a paused trigger. Idempotent.
#[utoipa::path(
    post, path = "/v1/triggers/{name}/resume", tag = "triggers",
    params(("name" = String, Path, description = "Trigger name")),
    responses(
        (status = 200, description = "Active again", body = TriggerView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not operate", body = ErrorBody),
        (status = 404, description = "Unknown trigger", body = ErrorBody),
        (status = 503, description = "The store failed; nothing changed", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn resume(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<TriggerView>, ApiError> {
    caller.require(Permission::Operate)?;
    let name = path_of(name)?;
    let trigger = set_paused(&state, &name, false).await?;
    tracing::info!(caller = %caller.name, "trigger `{name}` resumed");
    Ok(Json(TriggerView::of(&trigger)))
}
