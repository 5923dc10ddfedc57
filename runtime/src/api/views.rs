//! What the API answers with: instances, outcomes, journals, pools and flows, as JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::model::{FlowError, Outcome, StartMeta};
use crate::replay::Kind;
use crate::sched::Pool;
use crate::store::{Entry, InstanceRecord, Status};

pub use crate::model::json_of;

/// The status word of an outcome: `completed`, `failed`, `cancelled`, `timed-out`, `rejected`.
pub fn outcome_status(outcome: &Outcome) -> &'static str {
    match outcome {
        Ok(_) => "completed",
        Err(FlowError::Failed(_)) => "failed",
        Err(FlowError::Cancelled) => "cancelled",
        Err(FlowError::TimedOut) => "timed-out",
        Err(FlowError::Rejected(_)) => "rejected",
    }
}

/// An instance's outcome, or that it has none yet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutcomeView {
    /// Instance id.
    pub id: String,
    /// `running` (no outcome yet), `held`, `completed`, `failed`, `cancelled`, `timed-out`
    /// or `rejected`.
    pub status: String,
    /// The flow's output, when completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it has no output, when it ended without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OutcomeView {
    /// No outcome yet.
    pub fn running(id: &str) -> Self {
        OutcomeView {
            id: id.into(),
            status: "running".into(),
            output: None,
            error: None,
        }
    }

    /// Instance `id` ended with `outcome`.
    pub fn ended(id: &str, outcome: &Outcome) -> Self {
        OutcomeView {
            id: id.into(),
            status: outcome_status(outcome).into(),
            output: outcome.as_ref().ok().map(|o| json_of(o)),
            error: outcome.as_ref().err().map(ToString::to_string),
        }
    }
}

/// One instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// `running`, `held`, `completed`, `failed`, `cancelled`, `timed-out` or `rejected`.
    pub status: String,
    /// The pool it was admitted to.
    pub pool: String,
    /// `rpc`, `peer`, `subflow` or `trigger`.
    pub origin: String,
    /// Who started it: the caller, party, parent id or trigger.
    pub by: String,
    /// The parent's id, when a flow started it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Failed attempts so far (retries).
    pub attempts: u32,
    /// The latest progress step it reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Its output, when completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed or is held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it was recorded: RFC 3339, UTC, in milliseconds (absent for records older
    /// than the store's timestamps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it ended (completed, failed, timed out or cancelled): RFC 3339, UTC, in
    /// milliseconds; absent while it has not ended, and for ends older than the timestamps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// Unix milliseconds as RFC 3339, UTC, in milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

impl InstanceView {
    /// The view of a stored record; `progress` from its journal when read.
    pub fn of(record: &InstanceRecord, progress: Option<String>) -> Self {
        let meta = StartMeta::parse(&record.meta).unwrap_or_else(StartMeta::new_rpc);
        let status = match (record.status, record.outcome()) {
            (Status::Running, _) => "running",
            (Status::Hospital, _) => "held",
            (_, Some(outcome)) => outcome_status(&outcome),
            (_, None) => record.status.as_str(),
        };
        InstanceView {
            id: record.id.clone(),
            flow: record.flow.clone(),
            status: status.into(),
            pool: meta.pool.clone(),
            origin: meta.origin.kind().into(),
            by: meta.origin.by().into(),
            parent: meta.origin.parent().map(String::from),
            attempts: record.attempts,
            progress,
            output: match record.status {
                Status::Completed => record.output.as_ref().map(|o| json_of(&o.0)),
                _ => None,
            },
            message: record.message.clone(),
            created: record.created_ms.map(rfc3339),
            ended: record.ended_ms.map(rfc3339),
        }
    }
}

/// The latest progress step in a journal.
pub fn latest_progress(journal: &[Entry]) -> Option<String> {
    journal
        .iter()
        .rev()
        .find(|e| Kind::from_name(&e.call) == Some(Kind::Progress))
        .and_then(|e| e.args.get("step")?.as_str().map(String::from))
}

/// A page of instances.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstancePage {
    /// The instances, oldest first.
    pub instances: Vec<InstanceView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<u64>,
}

/// One journaled host call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    /// Position in the journal, from 0.
    pub position: u64,
    /// The host call (`call`, `sleep`, `progress`, …).
    pub call: String,
    /// Its arguments.
    pub args: Value,
    /// The host's answer.
    pub result: Value,
    /// When the call was made: RFC 3339, UTC, in milliseconds (absent for calls journaled
    /// before the store kept it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl From<Entry> for EntryView {
    fn from(e: Entry) -> Self {
        EntryView {
            position: e.position,
            call: e.call,
            args: e.args,
            result: e.result,
            at: e.at_ms.map(rfc3339),
        }
    }
}

/// One pool and its live figures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    /// Pool name.
    pub name: String,
    /// Most instances executing guest code at once.
    pub size: usize,
    /// Most admitted starts waiting for a slot.
    pub queue_capacity: usize,
    /// Executing guest code now.
    pub running: usize,
    /// Admitted and waiting for their first slot now.
    pub queued: usize,
    /// Parked at a suspension point now.
    pub parked: usize,
    /// Instances that got their first slot.
    pub started: u64,
    /// Instances that returned output.
    pub completed: u64,
    /// Instances that failed.
    pub failed: u64,
    /// Starts refused for a full queue.
    pub rejected: u64,
}

impl PoolView {
    /// The live figures of `pool`.
    pub fn of(pool: &Pool) -> Self {
        let s = pool.stats().snapshot();
        PoolView {
            name: pool.name().into(),
            size: pool.size(),
            queue_capacity: pool.queue_capacity(),
            running: s.running,
            queued: pool.queued(),
            parked: s.parked,
            started: s.started,
            completed: s.completed,
            failed: s.failed,
            rejected: s.rejected,
        }
    }
}

/// A live change to a pool: either field, or both.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolResize {
    /// New size: most instances executing guest code at once (1 to 4096). A smaller size
    /// stops nothing; it takes slots back as their holders give them up.
    pub size: Option<u64>,
    /// New queue capacity (at least 1). A smaller one drops nothing already queued.
    pub queue: Option<u64>,
}

/// One registered flow.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlowView {
    /// The name it is started by.
    pub name: String,
    /// SHA-256 of its component, once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The pool it is tagged to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Instances of it running in this node now (parked ones included).
    pub in_flight: usize,
}

/// Query of `GET /v1/instances`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only instances of this flow.
    pub flow: Option<String>,
    /// Only instances in this state: `running`, `completed`, `failed` (timed out
    /// included), `held`, `cancelled`.
    pub status: Option<String>,
    /// Only instances admitted to this pool.
    pub pool: Option<String>,
    /// Only children of this instance.
    pub parent: Option<String>,
    /// Only this instance and its descendants.
    pub root: Option<String>,
    /// Only instances created at or after this time (RFC 3339, e.g. `2026-11-30T08:00:00Z`).
    pub since: Option<String>,
    /// Only instances created before this time (RFC 3339).
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<u64>,
    /// At most this many (1 to 1000, default 100).
    pub limit: Option<usize>,
}

/// Query of the start route.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartParams {
    /// The instance id: a second start with the same id attaches to the first.
    pub id: Option<String>,
    /// `normal` (default) or `high`.
    pub priority: Option<String>,
    /// Wait this long for the outcome (`500ms`, `10s`, at most `1h`); without, answer at once.
    pub wait: Option<String>,
}

/// Query of routes that may wait for an outcome.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Wait this long for the outcome (`500ms`, `10s`, at most `1h`).
    pub wait: Option<String>,
}

/// Body of `POST /v1/hospital/{id}/retry`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Run it on this build instead (a component path on the node's machine).
    pub component: Option<String>,
}

/// What `POST /v1/instances/{id}/cancel` did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelView {
    /// The instance asked for.
    pub id: String,
    /// How many instances ended as cancelled: it and its unfinished descendants (one
    /// that ended by itself meanwhile is not counted).
    pub cancelled: usize,
}

/// A plain acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// What happened.
    pub message: String,
}
