//! Recovery: on start, every instance the store has as running is resumed on the component
//! it is pinned to (by content hash), replaying its journal.

use std::path::PathBuf;
use std::sync::Arc;

use super::Node;
use crate::instance::{self, Admitted, Flow};
use crate::model::StartMeta;
use crate::store::{InstanceRecord, Status, StoreError, Write};

impl Node {
    /// Put back the events nobody took, then resume every instance the store has as
    /// running: each is rebuilt on the component it is pinned to and replays its journal. Returns how many were resumed; one that
    /// cannot be rebuilt (its component is gone) is held in the hospital, saying why.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        // Events nobody took go back on their topics before anyone waits again. Topics are
        // a node's own: in a cluster, only a node alone in it puts them back (else two
        // nodes could each hand one out).
        let alone = match self.members()? {
            None => true,
            Some(members) => members
                .iter()
                .all(|m| m.state != "live" || Some(m.name.as_str()) == self.member_name()),
        };
        let events = if alone {
            self.journal().store().untaken_events()?
        } else {
            Vec::new()
        };
        if !events.is_empty() {
            tracing::info!("Restored {} untaken event(s) to their topics", events.len());
        }
        for event in events {
            self.messaging()
                .topics
                .topic(&event.topic)
                .restore(event.id, event.payload.0);
        }
        // A row this build cannot read is held, with why, instead of stopping the node (or
        // being forgotten): the operator decides, the rest runs.
        for (id, why) in self.journal().store().unreadable()? {
            let why = format!("its stored record cannot be read: {why}");
            tracing::error!("instance {id} held in the flow hospital: {why}");
            self.journal()
                .write(vec![Write::Status {
                    id,
                    status: Status::Hospital,
                    output: None,
                    message: Some(why),
                }])
                .await?;
        }
        // In a cluster: this node's own unfinished instances and those no live node owns.
        let records = match self.claim_for_recovery() {
            Some(claimed) => claimed?,
            None => self.journal().store().with_status(Status::Running)?,
        };
        let count = records.len();
        for record in records {
            self.resume(record).await?;
        }
        if count > 0 {
            tracing::info!("Recovered {count} unfinished flow instance(s) from the store");
        }
        Ok(count)
    }

    pub(super) async fn resume(&self, record: InstanceRecord) -> Result<(), StoreError> {
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
        let cancel = self.services().cancels.register(&record.id);
        // Resumed work is never refused for a full queue: it was admitted before.
        let admission = pool.readmit();
        let run = instance::run(Admitted {
            cancel,
            services: self.services().clone(),
            starter: self.inner.clone(),
            flow,
            admission,
            invocation,
            input: record.input.0,
            attempts: record.attempts,
            ids: meta.ids,
            fresh: false,
            pending: None,
        });
        self.pools().executor(pool.name()).spawn(run);
        Ok(())
    }

    /// The flow `name` on the component `hash`: the registered one when it is that build,
    /// else the build kept in the store (version pinning).
    async fn pinned_flow(&self, name: &str, hash: &str) -> Result<Arc<Flow>, String> {
        let current = self.flow(name).await.ok();
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
        let flow = Arc::new(Flow::new(name, settings, component));
        self.pinned().insert(hash.into(), flow.clone());
        Ok(flow)
    }
}
