//! `sluice replay`: re-run an exported journal against another build of its flow, with
//! every host call answered from the journal, and report whether the build makes the same
//! calls in the same order: the check before redeploying a flow with instances in flight.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use wasmtime::Store;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::TEST_CPU_BUDGET;
use crate::engine::ComponentCache;
use crate::engine::sandbox::{self, GuestOutput, Stream};
use crate::error::LoadError;
use crate::model::{EPOCH_TICK, FlowError, Priority, SessionRef, Side, StartMeta};
use crate::operator::Export;
use crate::replay::calls::{self, Call, Exchanged, Opened};
use crate::replay::{Nondeterminism, Recorder};
use crate::store::{Journal, MemoryStore, Payload, Status};
use crate::wit::host::{self, StartOptions};
use crate::wit::{self, FlowPre, LogLevel, WitFlowError, sessions, types};

/// The new build asked the host for more than the journal holds: everything recorded matched.
#[derive(Debug, thiserror::Error)]
#[error("the journal is exhausted")]
struct Exhausted;

/// Host state of a replay: answers only from the journal.
pub struct ReplayState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: GuestOutput,
    recorder: Recorder,
    children: HashSet<String>,
}

impl ReplayState {
    /// The recorded answer to `call`; past the journal's end, [`Exhausted`].
    fn answer<T: DeserializeOwned>(&mut self, call: Call<'_>) -> wasmtime::Result<T> {
        match self.recorder.replay_as(&call)? {
            Some(answer) => Ok(answer),
            None => Err(Exhausted.into()),
        }
    }
}

/// A build of a flow, ready to replay journals against.
pub struct JournalReplay {
    pre: FlowPre<ReplayState>,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Entries in the journal.
    pub entries: usize,
    /// `Ok(summary)` when the build makes the recorded calls in order, else why not
    /// (naming the first diverging call).
    pub verdict: Result<String, String>,
}

impl JournalReplay {
    /// Load the build at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        Self::load_with_cache(path, ComponentCache::default_dir())
    }

    /// [`JournalReplay::load`], compiled components cached in `cache_dir` (none: no cache).
    pub fn load_with_cache(path: &Path, cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let pre = super::load_pre::<ReplayState>(path, ComponentCache::new(cache_dir))?;
        Ok(JournalReplay { pre })
    }

    /// Replay `export` against this build.
    pub async fn check(&self, export: &Export) -> ReplayReport {
        let entries = export.journal.len();
        let report = |verdict| ReplayReport { entries, verdict };
        let journal = match Journal::new(Arc::new(MemoryStore::new())) {
            Ok(j) => j,
            Err(e) => return report(Err(format!("cannot set up the replay: {e}"))),
        };
        let record = &export.record;
        let stderr = GuestOutput::new(Stream::Stderr);
        let wasi = sandbox::wasi_ctx(&[], GuestOutput::new(Stream::Stdout), stderr.clone())
            .unwrap_or_else(|_| WasiCtx::builder().build());
        let state = ReplayState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            recorder: Recorder::new(&record.id, journal, export.journal.clone()),
            children: HashSet::new(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.set_epoch_deadline((TEST_CPU_BUDGET.as_millis() / EPOCH_TICK.as_millis()) as u64);
        store.epoch_deadline_trap();
        let meta = StartMeta::parse(&record.meta);
        // The identity the recorded instance saw, so a flow that reads it calls the same.
        let meta = meta.unwrap_or_else(StartMeta::new_rpc);
        let identity = if meta.identity.is_empty() {
            "replay"
        } else {
            meta.identity.as_str()
        };
        let invocation = meta.invocation(&record.id, &record.flow, identity);
        let invocation = wit::types::Invocation::from(&invocation);
        let result = match crate::engine::instantiate(&self.pre, &mut store).await {
            Ok(flow) => {
                flow.call_run(&mut store, &invocation, &record.input.0)
                    .await
            }
            Err(e) => Err(e),
        };
        let state = store.into_data();
        let verdict = match result {
            Err(trap) if trap.downcast_ref::<Exhausted>().is_some() => Ok(format!(
                "all {entries} recorded calls match; the new build then goes on live"
            )),
            Err(trap) => match trap.downcast_ref::<Nondeterminism>() {
                Some(n) => Err(n.to_string()),
                None => Err(format!(
                    "the new build trapped during replay: {}{}",
                    trap.downcast_ref::<wasmtime::Trap>()
                        .map_or_else(|| format!("{trap:#}"), |t| t.to_string()),
                    state
                        .stderr
                        .tail()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default()
                )),
            },
            Ok(returned) => match state.recorder.leftover() {
                Some(n) => Err(n.to_string()),
                None => compare_end(record.status, record.output.as_ref(), returned, entries),
            },
        };
        report(verdict)
    }
}

/// The new build returned after replaying everything: compare with how the recorded run ended.
fn compare_end(
    status: Status,
    recorded: Option<&Payload>,
    returned: Result<Vec<u8>, String>,
    entries: usize,
) -> Result<String, String> {
    let matched = format!("all {entries} recorded calls match");
    match (status, returned) {
        (Status::Completed, Ok(out)) if recorded.is_some_and(|r| r.0 == out) => {
            Ok(format!("{matched} and the output is the same"))
        }
        (Status::Completed, Ok(out)) => Ok(format!(
            "{matched}; the output differs: recorded {}, now {}",
            recorded.map(|r| r.to_string()).unwrap_or_default(),
            Payload(out)
        )),
        (_, Ok(_)) => Ok(format!("{matched}; the new build completes")),
        (_, Err(message)) => Err(format!(
            "{matched}, but the new build then fails: {message}"
        )),
    }
}

impl WasiView for ReplayState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for ReplayState {}

impl host::Host for ReplayState {
    async fn start(
        &mut self,
        flow: String,
        input: Vec<u8>,
        options: StartOptions,
    ) -> wasmtime::Result<Result<String, WitFlowError>> {
        let started: Result<String, FlowError> = self.answer(Call::Start {
            flow: &flow,
            input: &input,
            priority: options.priority.map(Priority::from),
        })?;
        if let Ok(id) = &started {
            self.children.insert(id.clone());
        }
        Ok(started.map_err(Into::into))
    }

    async fn join(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        let outcome: calls::Journaled = self.answer(Call::Join { id: &id })?;
        self.children.remove(&id);
        Ok(wit::outcome(outcome.map(|p| p.0)))
    }

    async fn call(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        let outcome: calls::Journaled = self.answer(Call::Call {
            flow: &flow,
            input: &input,
        })?;
        Ok(wit::outcome(outcome.map(|p| p.0)))
    }

    async fn parallel(
        &mut self,
        flow: String,
        inputs: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Vec<Result<Vec<u8>, WitFlowError>>> {
        let outcomes: Vec<calls::Journaled> = self.answer(Call::Parallel {
            flow: &flow,
            inputs: &inputs,
        })?;
        Ok(outcomes
            .into_iter()
            .map(|o| wit::outcome(o.map(|p| p.0)))
            .collect())
    }

    async fn cancel(&mut self, id: String) -> wasmtime::Result<Result<(), WitFlowError>> {
        let done: Result<(), FlowError> = self.answer(Call::Cancel { id: &id })?;
        Ok(done.map_err(Into::into))
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        self.answer(Call::Now)
    }

    async fn sleep(&mut self, ms: u64) -> wasmtime::Result<()> {
        let _deadline: u64 = self.answer(Call::Sleep { ms })?;
        Ok(())
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        self.answer(Call::Random)
    }

    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> wasmtime::Result<()> {
        self.answer::<()>(Call::Publish {
            topic: &topic,
            payload: &payload,
        })
    }

    async fn wait_event(
        &mut self,
        topic: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let _deadline: Option<u64> = self.answer(Call::WaitEvent {
            topic: &topic,
            timeout_ms,
        })?;
        let taken: Option<Payload> = self.answer(Call::TakeEvent { topic: &topic })?;
        Ok(taken.map(|p| p.0))
    }

    async fn log(&mut self, _level: LogLevel, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }

    async fn progress(&mut self, step: String) -> wasmtime::Result<()> {
        self.answer::<()>(Call::Progress { step: &step })
    }
}

impl sessions::Host for ReplayState {
    async fn initiator(&mut self) -> wasmtime::Result<Option<Resource<SessionRef>>> {
        match self.answer::<Option<Opened>>(Call::Initiator)? {
            Some(o) => Ok(Some(self.table.push(SessionRef::new(
                o.session,
                o.party,
                Side::Responder,
            ))?)),
            None => Ok(None),
        }
    }
}

impl sessions::HostSession for ReplayState {
    async fn new(&mut self, party: String) -> wasmtime::Result<Resource<SessionRef>> {
        let o: Opened = self.answer(Call::Session { party: &party })?;
        Ok(self
            .table
            .push(SessionRef::new(o.session, o.party, Side::Initiator))?)
    }

    async fn send(
        &mut self,
        s: Resource<SessionRef>,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let id = self.table.get(&s)?.id.clone();
        let sent: Exchanged = self.answer(Call::Send {
            session: &id,
            payload: &payload,
        })?;
        Ok(sent.map(|_| ()))
    }

    async fn receive(
        &mut self,
        s: Resource<SessionRef>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let id = self.table.get(&s)?.id.clone();
        let received: Exchanged = self.answer(Call::Receive { session: &id })?;
        Ok(received.map(|p| p.unwrap_or_default().0))
    }

    async fn counterparty(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<String> {
        Ok(self.table.get(&s)?.party.clone())
    }

    async fn drop(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}
