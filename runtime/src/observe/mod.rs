//! What the node tells the outside about its work: metrics in the Prometheus text format,
//! the stream of instance events, and the per-pool report table.

pub mod events;
pub mod metrics;
pub mod report;

pub use events::{EventKind, Events, InstanceEvent, Step};
pub use metrics::{Metrics, NodeFigures};
