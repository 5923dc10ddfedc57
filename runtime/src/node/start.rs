//! The ways in: [`Node::start`] (acknowledged once durable), [`Node::run`] (start and wait),
//! [`Node::submit`] (nobody waits); starting a known id attaches to that instance.

use tokio::sync::oneshot;

use super::Node;
use crate::error::StartError;
use crate::host::BoxFuture;
use crate::instance::{self, Admitted};
use crate::model::{
    FlowError, FlowHandle, IdScheme, Invocation, LimitExceeded, Origin, Outcome, StartMeta,
    StartRequest,
};
use crate::sched::QueueClass;
use crate::store::{InstanceRecord, Write};

impl Node {
    /// Admit a new instance: resolve the flow, choose its pool, take a queue place, record
    /// it durably, run it. Refused at once (nothing created) when the flow is unknown or the
    /// pool's queue is full. A request for an id the node knows attaches to that instance.
    pub async fn start(&self, request: StartRequest) -> Result<FlowHandle, StartError> {
        self.start_with(request, true, true).await
    }

    /// [`Node::start`] for a caller that waits for the outcome next (as `?wait=` does): the
    /// instance starts on the caller's thread, as with [`Node::run`].
    pub async fn start_awaited(&self, request: StartRequest) -> Result<FlowHandle, StartError> {
        let admitted = self.admit(request, true, true).await?;
        Ok(self.run_here_first(admitted).await)
    }

    /// [`Node::start`]; `acknowledge`: return only once the instance's record is durable.
    /// Without it (for [`Node::run`], whose caller learns nothing before the end) the record
    /// is written with the instance's first write, its end included: one commit, not two.
    /// `may_exist`: a given id may name a known instance, to attach to.
    pub(super) async fn start_with(
        &self,
        request: StartRequest,
        acknowledge: bool,
        may_exist: bool,
    ) -> Result<FlowHandle, StartError> {
        let admitted = self.admit(request, acknowledge, may_exist).await?;
        if let Some(work) = admitted.work {
            self.services()
                .pools
                .executor(admitted.handle.pool())
                .spawn(work);
        }
        Ok(admitted.handle)
    }

    /// Run a new instance's work on this thread until its first wait; its handle.
    async fn run_here_first(&self, admitted: Admit) -> FlowHandle {
        if let Some(work) = admitted.work {
            let pools = &self.services().pools;
            pools
                .executor(admitted.handle.pool())
                .run_here_first(work)
                .await;
        }
        admitted.handle
    }

    /// [`Node::start_with`], with the new instance's work handed back instead of spawned.
    async fn admit(
        &self,
        request: StartRequest,
        acknowledge: bool,
        may_exist: bool,
    ) -> Result<Admit, StartError> {
        if may_exist
            && let Some(id) = &request.id
            && let Some(handle) = self.attach(id)
        {
            return Ok(Admit::known(handle));
        }
        let services = self.services();
        // New work waits for a store that takes writes; a running flow's children are part
        // of work admitted before, and queue behind the commit being retried.
        if !matches!(request.origin, Origin::Subflow(_))
            && let Some(reason) = services.journal.unavailable()
        {
            services.metrics.refused_for_store();
            return Err(StartError::StoreUnavailable {
                flow: request.flow,
                reason,
            });
        }
        let flow = services
            .registry
            .resolve(&services.engine, &request.flow)
            .await?;
        let limit = flow.settings.limits.input;
        let size = request.input.len() as u64;
        if size > limit {
            return Err(StartError::Limit {
                flow: flow.name.clone(),
                source: LimitExceeded::Input { limit, size },
            });
        }
        let id = request
            .id
            .clone()
            .unwrap_or_else(|| ulid::Ulid::new().to_string());
        let invocation = Invocation {
            id: id.clone(),
            flow: flow.name.clone(),
            origin: request.origin,
            priority: request.priority,
            our_identity: services.identity.clone(),
        };
        let pool = self
            .choose_pool(&flow, &invocation, request.fan_out)
            .await
            .clone();
        let admission = pool
            .admit(QueueClass::from(request.priority))
            .map_err(|full| {
                services.metrics.rejected(&full.pool);
                StartError::QueueFull {
                    pool: full.pool,
                    flow: request.flow.clone(),
                    capacity: full.capacity,
                }
            })?;
        let Some(outcome) = services.completions.claim(&id) else {
            // Started concurrently under the same id: that run is the one.
            let rx = services.completions.watch(&id);
            return Ok(Admit::known(FlowHandle::new(
                id,
                pool.name().to_string(),
                rx,
            )));
        };
        // Cancellable from before its record exists: a cancellation that finds the record
        // finds the instance's task too.
        let cancel = services.cancels.register(&id);
        let meta = match StartMeta::json_of(&invocation, pool.name(), request.fan_out) {
            Ok(meta) => meta,
            Err(e) => {
                let e = StartError::Meta {
                    flow: flow.name.clone(),
                    reason: e.to_string(),
                };
                let refused = Err(FlowError::Rejected(e.to_string()));
                services.cancels.forget(&id);
                services.completions.finish(&id, &refused);
                return Err(e);
            }
        };
        let parent = invocation.origin.parent().map(String::from);
        let (hash, input) = (&flow.component.hash, &request.input);
        let record = InstanceRecord::with_parent(&id, &flow.name, hash, input, meta, parent);
        let mut batch = Vec::with_capacity(2);
        let first_use = self.first_use(&flow.component.hash);
        if first_use {
            batch.push(Write::Component {
                hash: flow.component.hash.clone(),
                bytes: flow.component.bytes.to_vec(),
            });
        }
        batch.push(Write::Create(record));
        // A child needs no wait: its parent's later writes queue after its record, so a crash
        // keeps both or neither. A caller outside the node is told only once it is durable.
        let mut pending = None;
        let recorded = if matches!(invocation.origin, Origin::Subflow(_)) {
            services.journal.append(batch)
        } else if acknowledge {
            services.journal.write(batch).await
        } else {
            pending = Some(batch);
            Ok(())
        };
        if let Err(source) = recorded {
            if first_use {
                self.stored_lock().remove(&flow.component.hash);
            }
            let e = StartError::Store {
                flow: flow.name.clone(),
                source,
            };
            services.cancels.forget(&id);
            services
                .completions
                .finish(&id, &Err(FlowError::Rejected(e.to_string())));
            return Err(e);
        }
        services
            .metrics
            .admitted(pool.name(), admission.queued_at_insert());
        let run = instance::run(Admitted {
            cancel,
            services: services.clone(),
            starter: self.inner.clone(),
            flow,
            admission,
            invocation,
            input: request.input,
            attempts: 0,
            ids: IdScheme::Bounded,
            fresh: true,
            pending,
        });
        Ok(Admit {
            handle: FlowHandle::new(id, pool.name().to_string(), outcome),
            work: Some(run),
        })
    }

    /// A handle on instance `id` if the node knows it (running here, or in the store).
    fn attach(&self, id: &str) -> Option<FlowHandle> {
        let completions = self.completions();
        if let Some(rx) = completions.watch_if_known(id) {
            return Some(FlowHandle::new(id.into(), String::new(), rx));
        }
        let record = self.journal().store().record(id).ok()??;
        let pool = StartMeta::parse(&record.meta)
            .map(|m| m.pool)
            .unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        match record.outcome() {
            Some(outcome) => {
                let _ = tx.send(outcome);
            }
            None => {
                // Not ended in the store: it may have ended with its end still queued (a
                // child's end is only appended), and then nobody will run it again. The
                // store's answer after a sync is the one to wait on, not a bare watch.
                let outcome = self.services().outcome_of(id);
                tokio::spawn(async move {
                    let _ = tx.send(outcome.await);
                });
            }
        }
        Some(FlowHandle::new(id.into(), pool, rx))
    }

    /// Start an instance nobody here waits for (its end goes to the store); returns its id
    /// once its record is durable. Cheaper than [`Node::start`] for many long-lived flows.
    pub async fn submit(&self, request: StartRequest) -> Result<String, StartError> {
        let id = self.start_with(request, true, true).await?.id().to_string();
        // Nobody waits: the handle is gone; drop the waiter it registered.
        self.completions().unwatch(&id);
        Ok(id)
    }

    /// Start and wait for the outcome. The instance is recorded durably before anything of
    /// it is seen outside (a child, its end); a crash before that loses a run whose caller
    /// was told nothing.
    ///
    /// The caller waits anyway, so the instance starts on the caller's thread (see
    /// [`PoolExecutor::run_here_first`](crate::sched::PoolExecutor::run_here_first)): a
    /// short flow ends without a hand-off to its pool's threads and back.
    pub async fn run(&self, request: StartRequest) -> Result<Outcome, StartError> {
        let admitted = self.admit(request, false, true).await?;
        Ok(self.run_here_first(admitted).await.outcome().await)
    }
}

/// An admitted start: the handle on its instance, and the work of a new instance, to run.
struct Admit {
    handle: FlowHandle,
    work: Option<BoxFuture<()>>,
}

impl Admit {
    /// An instance that exists already: nothing to run.
    fn known(handle: FlowHandle) -> Self {
        Admit { handle, work: None }
    }
}
