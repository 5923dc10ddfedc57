//! Test one flow component alone: no node, no children, no real time.
//!
//! A [`FlowTest`] loads a component and a [`Script`]: subflow outcomes, what counterparties
//! send, the events that arrive on topics. Every host call is answered by the script and
//! recorded; `sleep` (and a `wait-event` that times out) returns at once and advances a
//! virtual clock that `now` reads. A call the script does not cover fails the run, naming
//! the call.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use serde_json::json;
//! use sluice::testing::{FlowTest, Rule};
//!
//! let mut test = FlowTest::load("guest-flows/target/wasm32-wasip2/release/fanout.wasm".as_ref())?;
//! test.script(Rule::subflow("hello").returns(json!({ "greeting": "hi" })));
//! let run = test.run(json!({ "n": 2 })).await;
//! run.assert_output(&json!({ "results": [{ "greeting": "hi" }, { "greeting": "hi" }] }));
//! run.assert_calls(&[
//!     r#"start("hello", {"name":"child-0"})"#,
//!     r#"start("hello", {"name":"child-1"})"#,
//!     "join(child-1)",
//!     "join(child-2)",
//! ]);
//! # Ok(()) }
//! ```

mod calls;
#[doc(hidden)]
pub mod fuzz;
mod host;
pub mod replay;
pub mod scenario;
mod script;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wasmtime::Store;

pub use calls::HostCall;
pub use host::ScriptedState;
pub use script::{Response, Rule, Script};

use crate::engine::{ComponentCache, FlowEngine, FlowHost, Metering};
use crate::error::LoadError;
use crate::model::{EPOCH_TICK, Invocation, Origin, Priority};
use crate::wit::{self, FlowPre};

/// Where a virtual clock starts by default: 2026-01-01T00:00:00Z.
pub const DEFAULT_CLOCK_MS: u64 = 1_767_225_600_000;
/// CPU budget of one test run: a flow that busy-waits on `now()` (virtual time moves only
/// with `sleep`) fails instead of hanging.
pub const TEST_CPU_BUDGET: Duration = Duration::from_secs(20);

/// Compile the component at `path` (or fetch it from `cache`) for test host `T`, with the
/// node's engine settings and linker setup (so a component compiled for one is cached for
/// both).
pub(crate) fn load_pre<T: FlowHost>(
    path: &Path,
    cache: ComponentCache,
) -> Result<FlowPre<T>, LoadError> {
    let engine = FlowEngine::<T>::new(cache, Metering::Epoch).map_err(|e| LoadError::Invalid {
        path: path.into(),
        reason: format!("{e:#}"),
    })?;
    Ok(engine.load(path)?.pre)
}

/// A flow component under test, with its script.
#[derive(Clone)]
pub struct FlowTest {
    name: String,
    pre: FlowPre<ScriptedState>,
    script: Script,
    clock_ms: u64,
    seed: u64,
}

/// How a test run ended, and what the flow did on the way.
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The flow's output, or why there is none.
    pub outcome: Result<Value, String>,
    /// Every host call, in order (log lines excepted).
    pub calls: Vec<HostCall>,
    /// Virtual time slept.
    pub slept: Duration,
}

impl FlowTest {
    /// Load the component at `path` (compiled once, cached like a node's in the user's
    /// cache directory).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        Self::load_with_cache(path, ComponentCache::default_dir())
    }

    /// [`FlowTest::load`], caching compiled code in `cache_dir` instead (`None`: compile
    /// every time); test suites use it to keep out of the user's cache.
    pub fn load_with_cache(path: &Path, cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let pre = load_pre::<ScriptedState>(path, ComponentCache::new(cache_dir))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("flow")
            .to_string();
        Ok(FlowTest {
            name,
            pre,
            script: Script::default(),
            clock_ms: DEFAULT_CLOCK_MS,
            seed: 1,
        })
    }

    /// Run under another flow name (what `invocation.flow` says).
    pub fn named(&mut self, name: &str) -> &mut Self {
        self.name = name.into();
        self
    }

    /// Add a scripted subflow; earlier rules win.
    pub fn script(&mut self, rule: Rule) -> &mut Self {
        self.script.push(rule);
        self
    }

    /// Counterparty `party` sends `payload`, after what it was scripted to send before.
    pub fn message_from(&mut self, party: &str, payload: Value) -> &mut Self {
        self.script.message(party, payload);
        self
    }

    /// Counterparty `party`'s flow ends after its scripted messages: a further `receive`
    /// from it fails with `why`.
    pub fn counterparty_ends(&mut self, party: &str, why: &str) -> &mut Self {
        self.script.counterparty_ends(party, why);
        self
    }

    /// An event with `payload` arrives on `topic`, after those scripted before.
    pub fn event(&mut self, topic: &str, payload: Value) -> &mut Self {
        self.script.event(topic, payload);
        self
    }

    /// Run as the responder to a session `party` opened: `initiator()` returns it.
    pub fn initiated_by(&mut self, party: &str) -> &mut Self {
        self.script.initiated_by(party);
        self
    }

    /// Start the virtual clock at `ms` (unix milliseconds).
    pub fn clock_at(&mut self, ms: u64) -> &mut Self {
        self.clock_ms = ms;
        self
    }

    /// Seed the host's randomness.
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Run the flow once with `input`.
    pub async fn run(&self, input: Value) -> TestRun {
        let state = ScriptedState::new(Arc::new(self.script.clone()), self.clock_ms, self.seed);
        let mut store = Store::new(self.pre.engine(), state);
        let ticks = (TEST_CPU_BUDGET.as_millis() / EPOCH_TICK.as_millis()) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let invocation = Invocation {
            id: "01TEST00000000000000000000".into(),
            flow: self.name.clone(),
            origin: match &self.script.initiator {
                Some(party) => Origin::Peer(party.clone()),
                None => Origin::Rpc("test".into()),
            },
            priority: Priority::Normal,
            our_identity: "test".into(),
        };
        let input = serde_json::to_vec(&input).unwrap_or_default();
        let result = match crate::engine::instantiate(&self.pre, &mut store).await {
            Ok(flow) => {
                let invocation = wit::types::Invocation::from(&invocation);
                flow.call_run(&mut store, &invocation, &input).await
            }
            Err(e) => Err(e),
        };
        let state = store.into_data();
        let outcome = match result {
            Ok(Ok(bytes)) => Ok(calls::json_of(&bytes)),
            Ok(Err(message)) => Err(format!("failed: {message}")),
            Err(_) if state.unscripted.is_some() => {
                let call = state.unscripted.as_ref();
                let hint = call.and_then(HostCall::unscripted_hint);
                Err(format!(
                    "unscripted call: {}{}",
                    call.map(ToString::to_string).unwrap_or_default(),
                    hint.map(|h| format!(": {h}")).unwrap_or_default()
                ))
            }
            Err(trap)
                if matches!(
                    trap.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::Interrupt)
                ) =>
            {
                Err(format!(
                    "failed: the test's CPU budget ({}) ran out; virtual time moves only with sleep, \
                     so a busy wait on now() never ends",
                    humantime::format_duration(TEST_CPU_BUDGET)
                ))
            }
            Err(trap) => {
                let cause = trap
                    .downcast_ref::<wasmtime::Trap>()
                    .map_or_else(|| format!("{trap:#}"), |t| t.to_string());
                Err(match state.stderr_tail() {
                    Some(tail) => format!("failed: {cause} ({tail})"),
                    None => format!("failed: {cause}"),
                })
            }
        };
        TestRun {
            outcome,
            calls: state.calls,
            slept: Duration::from_millis(state.slept_ms),
        }
    }
}

impl TestRun {
    /// The calls, one line each, as `sluice test` prints them.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls.iter().map(ToString::to_string).collect()
    }

    /// `Ok` when the output is `expected`, else a message with both.
    pub fn check_output(&self, expected: &Value) -> Result<(), String> {
        match &self.outcome {
            Ok(actual) if actual == expected => Ok(()),
            Ok(actual) => Err(scenario::diff("output", &pretty(expected), &pretty(actual))),
            Err(e) => Err(format!(
                "expected output {expected}, but the flow ended: {e}"
            )),
        }
    }

    /// `Ok` when the calls are exactly `expected` (as [`HostCall`] prints them), else a diff.
    pub fn check_calls(&self, expected: &[&str]) -> Result<(), String> {
        let actual = self.call_lines();
        if actual
            .iter()
            .map(String::as_str)
            .eq(expected.iter().copied())
        {
            Ok(())
        } else {
            Err(scenario::diff(
                "calls",
                &expected.join("\n"),
                &actual.join("\n"),
            ))
        }
    }

    /// Panic with a readable diff unless the output is `expected`.
    pub fn assert_output(&self, expected: &Value) {
        if let Err(e) = self.check_output(expected) {
            panic!("{e}");
        }
    }

    /// Panic with a readable diff unless the calls are exactly `expected`.
    pub fn assert_calls(&self, expected: &[&str]) {
        if let Err(e) = self.check_calls(expected) {
            panic!("{e}");
        }
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
