//! Recovery: on start, every instance the store has as running is resumed on the component
//! it is pinned to (by content hash), replaying its journal. Also what a record keeps so
//! that an instance can be rebuilt: [`StartMeta`].

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bindings::sluice::flow::types::{Invocation, Origin, Priority};
use crate::error::FlowError;
use crate::instance::{self, Admitted};
use crate::journal::{InstanceRecord, Status, StoreError, Write, decode};
use crate::node::{Node, Outcome};
use crate::registry::RegisteredFlow;

/// How an instance was started: enough to rebuild its invocation and find its pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartMeta {
    /// `rpc`, `peer`, `subflow` or `trigger`.
    pub origin: String,
    /// The origin's payload (caller, party, parent id, trigger).
    pub by: String,
    /// `high` or `normal`.
    pub priority: String,
    /// The pool it was admitted to.
    pub pool: String,
    /// Whether it is a child of a `parallel`.
    #[serde(default)]
    pub fan_out: bool,
    /// The node identity the instance saw (`our-identity`); empty in records that predate it.
    #[serde(default)]
    pub identity: String,
}

impl StartMeta {
    /// The meta of `invocation`, admitted to `pool`.
    pub fn new(invocation: &Invocation, pool: &str, fan_out: bool) -> Self {
        let (origin, by) = match &invocation.origin {
            Origin::Rpc(s) => ("rpc", s),
            Origin::Peer(s) => ("peer", s),
            Origin::Subflow(s) => ("subflow", s),
            Origin::Trigger(s) => ("trigger", s),
        };
        StartMeta {
            origin: origin.into(),
            by: by.clone(),
            priority: match invocation.priority {
                Priority::High => "high",
                Priority::Normal => "normal",
            }
            .into(),
            pool: pool.into(),
            fan_out,
            identity: invocation.our_identity.clone(),
        }
    }

    /// An API start at normal priority, for records that kept no meta.
    pub fn new_rpc() -> Self {
        StartMeta {
            origin: "rpc".into(),
            by: "recovery".into(),
            priority: "normal".into(),
            pool: String::new(),
            fan_out: false,
            identity: String::new(),
        }
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From the store.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The invocation of instance `id` of `flow` on a node called `identity`.
    pub fn invocation(&self, id: &str, flow: &str, identity: &str) -> Invocation {
        let by = self.by.clone();
        Invocation {
            id: id.into(),
            flow: flow.into(),
            origin: match self.origin.as_str() {
                "peer" => Origin::Peer(by),
                "subflow" => Origin::Subflow(by),
                "trigger" => Origin::Trigger(by),
                _ => Origin::Rpc(by),
            },
            priority: if self.priority == "high" {
                Priority::High
            } else {
                Priority::Normal
            },
            our_identity: identity.into(),
        }
    }
}

/// The outcome of an ended record; `None` while it is running or held.
pub fn outcome_of_record(record: &InstanceRecord) -> Option<Outcome> {
    match record.status {
        Status::Completed => Some(Ok(record.output.clone().unwrap_or_default().0)),
        Status::Failed => {
            let stored = record
                .output
                .as_ref()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.0).ok())
                .and_then(|v| decode::<FlowError>(&v).ok());
            Some(Err(stored.unwrap_or_else(|| {
                FlowError::Failed(record.message.clone().unwrap_or_default())
            })))
        }
        Status::Running | Status::Hospital => None,
    }
}

impl Node {
    /// Put back the events nobody took, then resume every instance the store has as
    /// running: each is rebuilt on the component it is pinned to and replays its journal. Returns how many were resumed; one that
    /// cannot be rebuilt (its component is gone) is held in the hospital, saying why.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        // Events nobody took go back on their topics before anyone waits again.
        let events = self.journal().store().untaken_events()?;
        if !events.is_empty() {
            tracing::info!("Restored {} untaken event(s) to their topics", events.len());
        }
        for event in events {
            self.messaging()
                .topics
                .topic(&event.topic)
                .publish(event.id, event.payload.0);
        }
        let records = self.journal().store().with_status(Status::Running)?;
        let count = records.len();
        for record in records {
            self.resume(record).await?;
        }
        if count > 0 {
            tracing::info!("Recovered {count} unfinished flow instance(s) from the store");
        }
        Ok(count)
    }

    async fn resume(&self, record: InstanceRecord) -> Result<(), StoreError> {
        let flow = match self.pinned_flow(&record.flow, &record.component).await {
            Ok(flow) => flow,
            Err(why) => {
                tracing::error!("instance {} held in the flow hospital: {why}", record.id);
                return self
                    .journal()
                    .write(vec![Write::Status {
                        id: record.id.clone(),
                        status: Status::Hospital,
                        output: None,
                        message: Some(why),
                    }])
                    .await;
            }
        };
        let meta = StartMeta::parse(&record.meta).unwrap_or_else(StartMeta::new_rpc);
        let invocation = meta.invocation(&record.id, &record.flow, self.identity());
        let pool = match self.pools().get(&meta.pool) {
            Some(pool) => pool.clone(),
            None => self
                .choose_pool(&flow, &invocation, meta.fan_out)
                .await
                .clone(),
        };
        if self.completions().claim(&record.id).is_none() {
            return Ok(()); // already running here
        }
        // Resumed work is never refused for a full queue: it was admitted before.
        let admission = pool.readmit();
        let run = instance::run(
            self.clone(),
            Admitted {
                flow,
                admission,
                invocation,
                input: record.input.0,
                attempts: record.attempts,
                fresh: false,
                pending: None,
            },
        );
        self.pools().executor(pool.name()).spawn(run);
        Ok(())
    }

    /// The flow `name` on the component `hash`: the registered one when it is that build,
    /// else the build kept in the store (version pinning).
    pub(crate) async fn pinned_flow(
        &self,
        name: &str,
        hash: &str,
    ) -> Result<Arc<RegisteredFlow>, String> {
        let current = self.registry_flow(name).await.ok();
        if let Some(flow) = &current
            && flow.component.hash == hash
        {
            return Ok(flow.clone());
        }
        if let Some(flow) = self.pinned().get(hash) {
            return Ok(flow.clone());
        }
        let short = &hash[..hash.len().min(12)];
        let bytes = self
            .journal()
            .store()
            .component(hash)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("flow `{name}`: its component sha256 {short}… is not in the store")
            })?;
        let engine = self.engine_arc();
        let label = PathBuf::from(format!("<store>/{name}@{short}"));
        let component = tokio::task::spawn_blocking(move || engine.load_bytes(&bytes, &label))
            .await
            .map_err(|e| format!("compiler task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let settings = match &current {
            Some(flow) => flow.settings.clone(),
            None => self.default_settings(),
        };
        tracing::info!(
            flow = name,
            hash = short,
            "running a pinned build of flow `{name}`"
        );
        let flow = Arc::new(RegisteredFlow {
            name: name.into(),
            settings,
            component,
        });
        self.pinned().insert(hash.into(), flow.clone());
        Ok(flow)
    }
}
