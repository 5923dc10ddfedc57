//! Sluice: business flows as WebAssembly components.
//!
//! A [`Node`] loads flow components, admits start requests into named, bounded
//! [pools](scheduler), and runs each flow instance in its own wasmtime store. Every
//! suspension point (join, call, parallel, sleep, wait for an event, receive from a
//! session) is an async host function that
//! releases the instance's pool slot while it waits, so a waiting flow holds no slot
//! and no thread: a node cannot deadlock by waiting.
//!
//! Data flows one way: [`Node::start`] → [`scheduler`] → [`instance`] → [`host`] calls
//! → scheduler (children, timers).

pub mod bench;
pub mod bindings;
pub mod completions;
pub mod component_cache;
pub mod config;
pub mod engine;
pub mod error;
pub mod events;
pub mod host;
pub mod instance;
pub mod journal;
pub mod journal_calls;
pub mod limits;
pub mod messaging;
pub mod meter;
pub mod metrics;
pub mod node;
pub mod operator;
pub mod project;
pub mod recorder;
pub mod recovery;
pub mod registry;
pub mod report;
pub mod residency;
pub mod sandbox;
pub mod scheduler;
pub mod testing;

pub use config::NodeConfig;
pub use error::{FlowError, LoadError, StartError};
pub use node::{FlowHandle, Node, StartRequest};
