//! The testing host: answers a flow's host calls from a [`Script`], on a virtual clock,
//! and records every call.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::calls::{HostCall, json_of};
use super::script::{Response, Script};
use crate::bindings::sluice::flow::host::{self, StartOptions};
use crate::bindings::sluice::flow::types;
use crate::bindings::{LogLevel, WitFlowError};
use crate::error::FlowError;
use crate::sandbox::{self, GuestOutput, Stream};

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
}

impl ScriptedState {
    /// A fresh run answering from `script`, its clock at `clock_ms`, randomness seeded by `seed`.
    pub fn new(script: Arc<Script>, clock_ms: u64, seed: u64) -> Self {
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
        }
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
            None => {
                let message = format!("unscripted call: {call}");
                self.unscripted.get_or_insert(call);
                Err(wasmtime::Error::msg(message))
            }
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

    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        tracing::debug!(target: "sluice::guest", ?level, "{message}");
        Ok(())
    }

    async fn progress(&mut self, step: String) -> wasmtime::Result<()> {
        self.calls.push(HostCall::Progress { step });
        Ok(())
    }
}
