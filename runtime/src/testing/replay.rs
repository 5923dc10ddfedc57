//! `sluice replay`: re-run an exported journal against another build of its flow, with
//! every host call answered from the journal, and report whether the build makes the same
//! calls in the same order: the check before redeploying a flow with instances in flight.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::TEST_CPU_BUDGET;
use crate::bindings::sluice::flow::host::{self, StartOptions};
use crate::bindings::sluice::flow::sessions;
use crate::bindings::sluice::flow::types;
use crate::bindings::{FlowPre, LogLevel, WitFlowError};
use crate::component_cache::ComponentCache;
use crate::engine::EPOCH_TICK;
use crate::error::LoadError;
use crate::journal::{Journal, MemoryStore, Payload, Status, decode};
use crate::journal_calls::{self as calls, Opened};
use crate::messaging::{SessionRef, Side};
use crate::operator::Export;
use crate::recorder::{Nondeterminism, Recorder};
use crate::recovery::StartMeta;
use crate::sandbox::{self, GuestOutput, Stream};

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
    fn answer(&mut self, call: &str, args: Value) -> wasmtime::Result<Value> {
        match self.recorder.replay(call, &args)? {
            Some(answer) => Ok(answer),
            None => Err(Exhausted.into()),
        }
    }
}

/// A build of a flow, ready to replay journals against.
pub struct JournalReplay {
    engine: Engine,
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
        let cache = ComponentCache::new(ComponentCache::default_dir());
        let (engine, pre) = super::load_pre::<ReplayState>(path, &cache)?;
        Ok(JournalReplay { engine, pre })
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
        let mut store = Store::new(&self.engine, state);
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
        let result = match self.pre.instantiate_async(&mut store).await {
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
        let answer = self.answer("start", calls::start_args(&flow, &input, options.priority))?;
        let started = calls::started_from_json(&answer)?;
        if let Ok(id) = &started {
            self.children.insert(id.clone());
        }
        Ok(started.map_err(Into::into))
    }

    async fn join(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        let answer = self.answer("join", calls::join_args(&id))?;
        self.children.remove(&id);
        Ok(calls::outcome_from_json(&answer)?)
    }

    async fn call(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        let answer = self.answer("call", calls::flow_args(&flow, &input))?;
        Ok(calls::outcome_from_json(&answer)?)
    }

    async fn parallel(
        &mut self,
        flow: String,
        inputs: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Vec<Result<Vec<u8>, WitFlowError>>> {
        let answer = self.answer("parallel", calls::parallel_args(&flow, &inputs))?;
        Ok(calls::outcomes_from_json(&answer)?)
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        let answer = self.answer("now", Value::Null)?;
        Ok(decode(&answer)?)
    }

    async fn sleep(&mut self, ms: u64) -> wasmtime::Result<()> {
        self.answer("sleep", calls::sleep_args(ms))?;
        Ok(())
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        let answer = self.answer("random", Value::Null)?;
        Ok(decode(&answer)?)
    }

    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> wasmtime::Result<()> {
        self.answer("publish", calls::publish_args(&topic, &payload))?;
        Ok(())
    }

    async fn wait_event(
        &mut self,
        topic: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        self.answer("wait-event", calls::wait_event_args(&topic, timeout_ms))?;
        let answer = self.answer("take-event", calls::take_event_args(&topic))?;
        Ok(decode::<Option<Payload>>(&answer)?.map(|p| p.0))
    }

    async fn log(&mut self, _level: LogLevel, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }

    async fn progress(&mut self, step: String) -> wasmtime::Result<()> {
        self.answer("progress", calls::progress_args(&step))?;
        Ok(())
    }
}

impl sessions::Host for ReplayState {
    async fn initiator(&mut self) -> wasmtime::Result<Option<Resource<SessionRef>>> {
        let answer = self.answer("initiator", json!(null))?;
        match decode::<Option<Opened>>(&answer)? {
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
        let o: Opened = decode(&self.answer("session", calls::session_args(&party))?)?;
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
        let answer = self.answer("send", calls::send_args(&id, &payload))?;
        Ok(calls::exchanged_from_json(&answer)?.map(|_| ()))
    }

    async fn receive(
        &mut self,
        s: Resource<SessionRef>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let id = self.table.get(&s)?.id.clone();
        let answer = self.answer("receive", calls::receive_args(&id))?;
        Ok(calls::exchanged_from_json(&answer)?.map(|p| p.unwrap_or_default().0))
    }

    async fn counterparty(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<String> {
        Ok(self.table.get(&s)?.party.clone())
    }

    async fn drop(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}
