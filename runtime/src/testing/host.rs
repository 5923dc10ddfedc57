//! The testing host: answers a flow's host calls from a [`Script`], on a virtual clock,
//! and records every call.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::calls::{HostCall, json_of};
use super::script::{Response, Script};
use crate::engine::sandbox::{self, GuestOutput, Stream};
use crate::model::{FlowError, SessionRef, Side};
use crate::wit::host::{self, StartOptions};
use crate::wit::{LogLevel, WitFlowError, sessions, types};

/// Host state of one test run: the `T` of its `Store<T>`.
pub struct ScriptedState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: GuestOutput,
    script: Arc<Script>,
    /// Every call made, in order (log lines excepted).
    pub calls: Vec<HostCall>,
    /// The virtual clock, unix milliseconds: `sleep` advances it at once.
    pub clock_ms: u64,
    /// Milliseconds slept in total.
    pub slept_ms: u64,
    random: u64,
    children: HashMap<String, Result<Vec<u8>, FlowError>>,
    /// The first call no rule covered; the run fails on it.
    pub unscripted: Option<HostCall>,
    /// What each counterparty still has to send.
    inboxes: HashMap<String, VecDeque<Result<Value, String>>>,
    /// Events still to arrive, by topic.
    topics: HashMap<String, VecDeque<Value>>,
    sessions: usize,
}

impl ScriptedState {
    /// A fresh run answering from `script`, its clock at `clock_ms`, randomness seeded by `seed`.
    pub fn new(script: Arc<Script>, clock_ms: u64, seed: u64) -> Self {
        let mut inboxes: HashMap<String, VecDeque<_>> = HashMap::new();
        for (party, message) in &script.messages {
            inboxes
                .entry(party.clone())
                .or_default()
                .push_back(message.clone());
        }
        let mut topics: HashMap<String, VecDeque<_>> = HashMap::new();
        for (topic, payload) in &script.events {
            topics
                .entry(topic.clone())
                .or_default()
                .push_back(payload.clone());
        }
        let stderr = GuestOutput::new(Stream::Stderr);
        // No grants: the sandbox of a real node, minus nothing.
        let wasi = sandbox::wasi_ctx(&[], GuestOutput::new(Stream::Stdout), stderr.clone())
            .unwrap_or_else(|_| WasiCtx::builder().build());
        ScriptedState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            script,
            calls: Vec::new(),
            clock_ms,
            slept_ms: 0,
            random: seed | 1,
            children: HashMap::new(),
            unscripted: None,
            inboxes,
            topics,
            sessions: 0,
        }
    }

    /// Fail the run on `call`, which the script does not cover.
    fn unscripted(&mut self, call: HostCall) -> wasmtime::Error {
        let message = match call.unscripted_hint() {
            Some(hint) => format!("unscripted call: {call}: {hint}"),
            None => format!("unscripted call: {call}"),
        };
        self.unscripted.get_or_insert(call);
        wasmtime::Error::msg(message)
    }

    fn open(&mut self, party: String) -> wasmtime::Result<Resource<SessionRef>> {
        self.sessions += 1;
        let session = SessionRef::new(format!("session-{}", self.sessions), party, Side::Initiator);
        Ok(self.table.push(session)?)
    }

    /// The last lines the guest wrote to stderr.
    pub fn stderr_tail(&self) -> Option<String> {
        self.stderr.tail()
    }

    /// The scripted outcome of subflow `flow` with `input`; an unscripted call traps the run.
    fn answer(
        &mut self,
        call: HostCall,
        flow: &str,
        input: &[u8],
    ) -> wasmtime::Result<Result<Vec<u8>, FlowError>> {
        match self.script.answer(flow, &json_of(input)) {
            Some(Response::Output(v)) => Ok(Ok(serde_json::to_vec(v)?)),
            Some(Response::Error(e)) => Ok(Err(e.clone())),
            None => Err(self.unscripted(call)),
        }
    }
}

impl WasiView for ScriptedState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for ScriptedState {}

impl host::Host for ScriptedState {
    async fn start(
        &mut self,
        flow: String,
        input: Vec<u8>,
        _options: StartOptions,
    ) -> wasmtime::Result<Result<String, WitFlowError>> {
        let id = format!("child-{}", self.children.len() + 1);
        let call = HostCall::Start {
            flow: flow.clone(),
            input: json_of(&input),
            id: id.clone(),
        };
        self.calls.push(call.clone());
        let outcome = self.answer(call, &flow, &input)?;
        self.children.insert(id.clone(), outcome);
        Ok(Ok(id))
    }

    async fn join(&mut self, id: String) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        self.calls.push(HostCall::Join { id: id.clone() });
        Ok(match self.children.remove(&id) {
            Some(outcome) => outcome.map_err(Into::into),
            None => Err(WitFlowError::Rejected(format!(
                "join: `{id}` is not an unjoined child of this instance"
            ))),
        })
    }

    async fn call(
        &mut self,
        flow: String,
        input: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, WitFlowError>> {
        let call = HostCall::Call {
            flow: flow.clone(),
            input: json_of(&input),
        };
        self.calls.push(call.clone());
        Ok(self.answer(call, &flow, &input)?.map_err(Into::into))
    }

    async fn parallel(
        &mut self,
        flow: String,
        inputs: Vec<Vec<u8>>,
    ) -> wasmtime::Result<Vec<Result<Vec<u8>, WitFlowError>>> {
        let call = HostCall::Parallel {
            flow: flow.clone(),
            inputs: inputs.iter().map(|i| json_of(i)).collect(),
        };
        self.calls.push(call.clone());
        let mut results = Vec::with_capacity(inputs.len());
        for input in &inputs {
            results.push(self.answer(call.clone(), &flow, input)?.map_err(Into::into));
        }
        Ok(results)
    }

    async fn cancel(&mut self, id: String) -> wasmtime::Result<Result<(), WitFlowError>> {
        self.calls.push(HostCall::Cancel { id: id.clone() });
        // A scripted child has no run to stop: it ends as cancelled, for a later `join`.
        Ok(match self.children.get_mut(&id) {
            Some(outcome) => {
                *outcome = Err(FlowError::Cancelled);
                Ok(())
            }
            None => Err(WitFlowError::Rejected(format!(
                "cancel: `{id}` is not an unjoined child of this instance"
            ))),
        })
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        self.calls.push(HostCall::Now);
        Ok(self.clock_ms)
    }

    async fn sleep(&mut self, ms: u64) -> wasmtime::Result<()> {
        self.calls.push(HostCall::Sleep { ms });
        self.clock_ms = self.clock_ms.saturating_add(ms);
        self.slept_ms = self.slept_ms.saturating_add(ms);
        Ok(())
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        self.calls.push(HostCall::Random);
        // xorshift64: deterministic per seed, so a scenario's randomness is repeatable.
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        Ok(self.random)
    }

    async fn publish(&mut self, topic: String, payload: Vec<u8>) -> wasmtime::Result<()> {
        self.calls.push(HostCall::Publish {
            topic,
            payload: json_of(&payload),
        });
        Ok(())
    }

    async fn wait_event(
        &mut self,
        topic: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let call = HostCall::WaitEvent {
            topic: topic.clone(),
            timeout_ms,
        };
        self.calls.push(call.clone());
        if let Some(event) = self.topics.get_mut(&topic).and_then(VecDeque::pop_front) {
            return Ok(Some(serde_json::to_vec(&event)?));
        }
        // No event comes: the wait times out on the virtual clock, or never ends.
        let Some(ms) = timeout_ms else {
            return Err(self.unscripted(call));
        };
        self.clock_ms = self.clock_ms.saturating_add(ms);
        self.slept_ms = self.slept_ms.saturating_add(ms);
        Ok(None)
    }

    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        tracing::debug!(target: "sluice::guest", ?level, "{message}");
        Ok(())
    }

    async fn progress(&mut self, step: String) -> wasmtime::Result<()> {
        self.calls.push(HostCall::Progress { step });
        Ok(())
    }
}

impl sessions::Host for ScriptedState {
    async fn initiator(&mut self) -> wasmtime::Result<Option<Resource<SessionRef>>> {
        self.calls.push(HostCall::Initiator);
        let Some(party) = self.script.initiator.clone() else {
            return Ok(None);
        };
        let session = SessionRef::new("initiator".into(), party, Side::Responder);
        Ok(Some(self.table.push(session)?))
    }
}

impl sessions::HostSession for ScriptedState {
    async fn new(&mut self, party: String) -> wasmtime::Result<Resource<SessionRef>> {
        self.calls.push(HostCall::Session {
            party: party.clone(),
        });
        self.open(party)
    }

    async fn send(
        &mut self,
        s: Resource<SessionRef>,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let party = self.table.get(&s)?.party.clone();
        self.calls.push(HostCall::Send {
            party,
            payload: json_of(&payload),
        });
        Ok(Ok(()))
    }

    async fn receive(
        &mut self,
        s: Resource<SessionRef>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let party = self.table.get(&s)?.party.clone();
        let call = HostCall::Receive {
            party: party.clone(),
        };
        self.calls.push(call.clone());
        let inbox = self.inboxes.get_mut(&party);
        let next = match inbox {
            // A counterparty that ended stays ended.
            Some(inbox) if matches!(inbox.front(), Some(Err(_))) && inbox.len() == 1 => {
                inbox.front().cloned()
            }
            Some(inbox) => inbox.pop_front(),
            None => None,
        };
        match next {
            Some(Ok(message)) => Ok(Ok(serde_json::to_vec(&message)?)),
            Some(Err(why)) => Ok(Err(why)),
            None => Err(self.unscripted(call)),
        }
    }

    async fn counterparty(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<String> {
        Ok(self.table.get(&s)?.party.clone())
    }

    async fn drop(&mut self, s: Resource<SessionRef>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}
