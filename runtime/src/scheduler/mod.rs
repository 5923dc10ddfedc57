//! Named, bounded pools and the choice of pool for a new instance.
//!
//! A [`Pool`] hands out [`Slot`]s: an instance executes guest code only while it
//! holds one, and gives it back at every suspension point. Waiting for a slot is
//! ordered by [`QueueClass`]; admission of new starts is bounded by the pool's queue.

mod executor;
mod mapper;
mod pool;
mod pools;
pub mod rules;
mod stats;

pub use executor::PoolExecutor;
pub use mapper::{ComponentMapper, Fallback};
pub use pool::{Admission, Pool, QueueClass, QueueFull, Slot};
pub use pools::Pools;
pub use stats::{PoolSnapshot, PoolStats};
