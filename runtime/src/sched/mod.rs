//! Named, bounded pools, the choice of pool for a new instance, and the bound on instances
//! in memory.
//!
//! A [`Pool`] hands out [`Slot`]s: an instance executes guest code only while it
//! holds one, and gives it back at every suspension point. Waiting for a slot is
//! ordered by [`QueueClass`]; admission of new starts is bounded by the pool's queue.
//! [`Residency`] bounds resident instances: beyond it, parked ones are evicted.

mod executor;
mod mapper;
mod pool;
#[cfg(test)]
mod pool_props;
mod pools;
pub mod residency;
pub mod rules;
mod stats;

pub use executor::PoolExecutor;
pub use mapper::{ComponentMapper, Fallback};
pub use pool::{Admission, Pool, QueueClass, QueueFull, Slot};
pub use pools::Pools;
pub use residency::{Parking, Residency, Resident};
pub use stats::{PoolSnapshot, PoolStats};
