//! The cluster this node is part of: its members, their leases and the work each owns.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::ApiState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use crate::model::Permission;
use crate::store::Member;

/// This node's view of its cluster.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// This node's name in the cluster; absent when its store is its own (SQLite, memory).
    pub node: Option<String>,
    /// Whether this node leads the cluster (runs its schedules).
    pub leader: bool,
    /// Every node that ever joined the store, oldest first (none when not clustered).
    pub members: Vec<Member>,
}

/// The nodes sharing this node's store, with their leases and claimed instances.
#[utoipa::path(
    get, path = "/v1/cluster", tag = "node",
    responses(
        (status = 200, description = "The cluster", body = ClusterView),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token may not read", body = ErrorBody),
    ),
    security(("token" = []))
)]
pub async fn cluster(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<ClusterView>, ApiError> {
    caller.require(Permission::Read)?;
    let node = state.node.clone();
    let members = tokio::task::spawn_blocking(move || node.members())
        .await
        .map_err(|e| ApiError::unavailable(format!("the cluster view failed: {e}")))?
        .map_err(|e| ApiError::unavailable(format!("the store cannot list the cluster: {e}")))?;
    Ok(Json(ClusterView {
        node: state.node.member_name().map(str::to_string),
        leader: state.node.member_name().is_some() && state.node.is_leader(),
        members: members.unwrap_or_default(),
    }))
}
