//! Sluice: business flows as WebAssembly components.
//!
//! A [`Node`] loads flow components, admits start requests into named, bounded
//! [pools](sched), and runs each flow instance in its own wasmtime store. Every
//! suspension point (join, call, parallel, sleep, wait for an event, receive from a
//! session) is an async host function that releases the instance's pool slot while it
//! waits, so a waiting flow holds no slot and no thread: a node cannot deadlock by waiting.
//!
//! The modules form layers; each imports only from the layers below it (a test,
//! `tests/all/layers.rs`, keeps it so), bottom to top:
//!
//! | layer | holds |
//! | --- | --- |
//! | [`model`] | plain data: outcomes, limits and units, settings, invocations, starts, ids |
//! | [`wit`], [`config`], [`store`] | the WIT bindings and their conversions; TOML → model; the durable store |
//! | [`error`] | why a load or a start failed |
//! | [`replay`], [`messaging`] | journaled calls and the recorder; sessions and topics |
//! | [`engine`] | wasmtime engines, the linker, component cache, sandbox, meter, registry |
//! | [`sched`] | pools, queue classes, rules, the mapper, residency |
//! | [`observe`] | metrics, instance events, the pools report |
//! | [`peers`] | other nodes: links, tokens, the HTTP client that opens sessions and delivers |
//! | [`host`] | the flow's imports; what instances share; the one way up ([`host::Starter`]) |
//! | [`instance`] | one instance's life: attempts, segments, its end |
//! | [`node`] | the façade: admission, recovery; implements [`host::Starter`] |
//! | [`operator`], [`triggers`] | offline operator verbs; URL, event and schedule triggers |
//! | [`testing`], [`project`] | flows tested in isolation, journal replay; new flow projects and their builds |
//! | [`api`] | the node as a service: HTTP API, OpenAPI, auth, drain |
//! | [`console`] | the operator console: web pages under `/ui` beside the API |
//!
//! A start goes one way: [`Node::start`] → [`sched`] (a pool, a queue place) →
//! [`instance`] → [`host`] calls → [`replay`]/[`store`]; a child's start goes back up only
//! through [`host::Starter`].

pub mod model;

pub mod config;
pub mod store;
pub mod wit;

pub mod error;

pub mod messaging;
pub mod replay;

pub mod engine;

pub mod sched;

pub mod observe;

pub mod peers;

pub mod host;

pub mod instance;

pub mod node;

pub mod operator;
pub mod triggers;

pub mod project;
pub mod testing;

pub mod api;

pub mod console;

pub use config::NodeConfig;
pub use error::{LoadError, StartError};
pub use model::{FlowError, FlowHandle, Outcome, StartRequest};
pub use node::Node;
