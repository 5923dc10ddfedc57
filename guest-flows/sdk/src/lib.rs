//! Write Sluice flows in Rust.
//!
//! A flow is one function from a typed input to a typed output, given a [`Ctx`]
//! through which it reaches the node: subflows, time, randomness, events, sessions with
//! counterparties ([`Session`]), logging.
//! Payloads cross the boundary as JSON; the raw WIT (`sluice wit`) stays usable
//! from any language.
//!
//! ```ignore
//! use sluice_flow::{Ctx, Result};
//!
//! fn greet(ctx: &Ctx, name: String) -> Result<String> {
//!     ctx.info(&format!("greeting {name}"));
//!     Ok(format!("hello, {name}"))
//! }
//! sluice_flow::flow!(greet);
//! ```

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "flow",
        pub_export_macro: true,
        default_bindings_module: "sluice_flow::bindings",
    });
}

use bindings::sluice::flow::{host, sessions};
pub use bindings::sluice::flow::types::{FlowError, Invocation, LogLevel, Origin, Priority};

/// Why a flow step failed. Converts to the flow's error message when returned from a flow.
#[derive(Debug)]
pub enum Error {
    /// A subflow did not produce output.
    Subflow { flow: String, error: FlowError },
    /// A payload was not the JSON the flow expected.
    Json(String),
    /// A session with a counterparty failed (unknown party, no responder, it ended).
    Session { party: String, message: String },
    /// The flow's own failure.
    Failed(String),
}

/// Result of a flow step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Subflow { flow, error } => write!(f, "subflow {flow}: {}", describe(error)),
            Error::Json(msg) => write!(f, "bad JSON payload: {msg}"),
            Error::Session { party, message } => write!(f, "session with {party}: {message}"),
            Error::Failed(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e.to_string())
    }
}

impl From<String> for Error {
    fn from(msg: String) -> Self {
        Error::Failed(msg)
    }
}

impl From<&str> for Error {
    fn from(msg: &str) -> Self {
        Error::Failed(msg.to_string())
    }
}

/// Human-readable text of a [`FlowError`].
pub fn describe(error: &FlowError) -> String {
    match error {
        FlowError::Failed(m) => format!("failed: {m}"),
        FlowError::Cancelled => "cancelled".into(),
        FlowError::TimedOut => "timed out".into(),
        FlowError::Rejected(m) => format!("rejected: {m}"),
    }
}

/// A subflow started with [`Ctx::start`], to be awaited with [`Ctx::join`].
#[derive(Debug)]
#[must_use = "a started child should be joined"]
pub struct Child {
    flow: String,
    id: String,
}

impl Child {
    /// The child's instance id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A session with a counterparty's flow: ordered messages both ways, JSON-encoded.
pub struct Session {
    inner: sessions::Session,
}

impl Session {
    /// The party at the other end.
    pub fn counterparty(&self) -> String {
        self.inner.counterparty()
    }

    fn failed(&self, message: String) -> Error {
        Error::Session { party: self.counterparty(), message }
    }

    /// Send `message`; the first send (or receive) starts the counterparty's responder flow.
    pub fn send<T: Serialize + ?Sized>(&self, message: &T) -> Result<()> {
        let bytes = serde_json::to_vec(message)?;
        self.inner.send(&bytes).map_err(|m| self.failed(m))
    }

    /// Wait for the counterparty's next message (a suspension point).
    pub fn receive<T: DeserializeOwned>(&self) -> Result<T> {
        let bytes = self.inner.receive().map_err(|m| self.failed(m))?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Send `message`, then wait for the answer.
    pub fn send_and_receive<T: Serialize + ?Sized, R: DeserializeOwned>(&self, message: &T) -> Result<R> {
        self.send(message)?;
        self.receive()
    }
}

/// The running flow's view of the node.
pub struct Ctx {
    invocation: Invocation,
}

impl Ctx {
    /// This instance's id.
    pub fn id(&self) -> &str {
        &self.invocation.id
    }

    /// The name this flow is registered under.
    pub fn flow_name(&self) -> &str {
        &self.invocation.flow
    }

    /// Everything the node told this instance about itself.
    pub fn invocation(&self) -> &Invocation {
        &self.invocation
    }

    /// Start `flow` with `input` and wait for its output (a suspension point).
    pub fn call<I: Serialize + ?Sized, O: DeserializeOwned>(&self, flow: &str, input: &I) -> Result<O> {
        let bytes = serde_json::to_vec(input)?;
        let out = host::call(flow, &bytes).map_err(|error| Error::Subflow { flow: flow.into(), error })?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Start `flow` with `input` and return at once; await it later with [`Ctx::join`].
    pub fn start<I: Serialize + ?Sized>(&self, flow: &str, input: &I) -> Result<Child> {
        let bytes = serde_json::to_vec(input)?;
        let options = host::StartOptions { priority: None };
        let id = host::start(flow, &bytes, options).map_err(|error| Error::Subflow { flow: flow.into(), error })?;
        Ok(Child { flow: flow.into(), id })
    }

    /// Wait for a child started with [`Ctx::start`] (a suspension point).
    pub fn join<O: DeserializeOwned>(&self, child: Child) -> Result<O> {
        let out = host::join(&child.id).map_err(|error| Error::Subflow { flow: child.flow, error })?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Cancel a child started with [`Ctx::start`], with all its descendants. It stays
    /// joinable: [`Ctx::join`] then fails with [`FlowError::Cancelled`] (or gives its
    /// output, when it ended first). Journaled like every host call.
    pub fn cancel(&self, child: &Child) -> Result<()> {
        host::cancel(&child.id).map_err(|error| Error::Subflow { flow: child.flow.clone(), error })
    }

    /// Run `flow` once per input, concurrently, and wait for all (a suspension point).
    /// Results come back in input order.
    pub fn parallel<I: Serialize, O: DeserializeOwned>(&self, flow: &str, inputs: &[I]) -> Result<Vec<Result<O>>> {
        let encoded = inputs.iter().map(serde_json::to_vec).collect::<std::result::Result<Vec<_>, _>>()?;
        let results = host::parallel(flow, &encoded);
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(Error::from),
                Err(error) => Err(Error::Subflow { flow: flow.into(), error }),
            })
            .collect())
    }

    /// Park for `duration` (a suspension point); holds no pool slot meanwhile.
    pub fn sleep(&self, duration: Duration) {
        host::sleep(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    }

    /// The node's clock in unix milliseconds (replayed deterministically).
    pub fn now_ms(&self) -> u64 {
        host::now()
    }

    /// A random number from the node (replayed deterministically).
    pub fn random(&self) -> u64 {
        host::random()
    }

    /// Open a session with `party`; its responder starts at the first send or receive.
    pub fn open_session(&self, party: &str) -> Session {
        Session { inner: sessions::Session::new(party) }
    }

    /// In a responder flow, the session its initiator opened; `None` in any other flow.
    pub fn initiator(&self) -> Option<Session> {
        sessions::initiator().map(|inner| Session { inner })
    }

    /// Publish `event` on `topic`: the next [`Ctx::wait_event`] on it takes it.
    pub fn publish<T: Serialize + ?Sized>(&self, topic: &str, event: &T) -> Result<()> {
        host::publish(topic, &serde_json::to_vec(event)?);
        Ok(())
    }

    /// Take the next event on `topic`, waiting up to `timeout` (forever when `None`); `None`
    /// when the wait timed out (a suspension point).
    pub fn wait_event<T: DeserializeOwned>(&self, topic: &str, timeout: Option<Duration>) -> Result<Option<T>> {
        let ms = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        match host::wait_event(topic, ms) {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Record that the flow reached `step`.
    pub fn progress(&self, step: &str) {
        host::progress(step)
    }

    /// A log line at `level`, tagged by the node with flow, id and pool.
    pub fn log(&self, level: LogLevel, message: &str) {
        host::log(level, message)
    }

    /// A log line at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message)
    }

    /// A log line at warn level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message)
    }
}

/// Glue used by [`flow!`]: decode the input, run the handler, encode the output.
#[doc(hidden)]
pub fn __run<I, O, F>(invocation: Invocation, input: Vec<u8>, handler: F) -> std::result::Result<Vec<u8>, String>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(&Ctx, I) -> Result<O>,
{
    let input: I = serde_json::from_slice(&input).map_err(|e| format!("bad input for {}: {e}", invocation.flow))?;
    let ctx = Ctx { invocation };
    let output = handler(&ctx, input).map_err(|e| e.to_string())?;
    serde_json::to_vec(&output).map_err(|e| format!("cannot encode output: {e}"))
}

/// Export `handler: fn(&Ctx, I) -> Result<O>` as this component's flow.
#[macro_export]
macro_rules! flow {
    ($handler:path) => {
        struct __SluiceFlow;
        impl $crate::bindings::Guest for __SluiceFlow {
            fn run(
                invocation: $crate::Invocation,
                input: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::__run(invocation, input, $handler)
            }
        }
        $crate::bindings::export!(__SluiceFlow);
    };
}
