//! The wasmtime side of running flows: engines, their one linker setup ([`linker`]),
//! loading and caching components ([`component_cache`]), the sandbox of each instance
//! ([`sandbox`]), its meter ([`meter`]), and the flows known by name ([`registry`]).
//!
//! [`FlowEngine`] is generic over the store data `T` of the host that runs the flows: the
//! node's host, the scripted testing host and the replay host share its settings and its
//! linker setup.
//!
//! Choices, and why:
//! - **On-demand allocator, not pooling.** What bounds how many instances can be parked is
//!   `vm.max_map_count` (65530 here), long before RAM. The pooling allocator protects a guard
//!   page for every stack slot up front (2 mappings per slot, parked or not) and splits a
//!   mapping per active memory, so 20,000 resident instances need >80,000 mappings; it also
//!   makes every node pay for its maximum at startup. On demand, with the settings below, an
//!   instance costs 3 mappings (its memory, its fiber stack and the stack's guard page) only
//!   while it lives. Instantiation is ~2x slower (tens of µs), measured in `sluice bench`.
//! - **Linear memory sized exactly** (`memory_reservation(0)`, no guard region, may move on
//!   growth): one mapping per memory instead of two. Bounds checks are explicit either way
//!   with a reservation below 4 GiB. The per-flow cap is enforced by a store limiter.
//! - **Copy-on-write memory init off**: CoW costs extra mappings per instance; our guests'
//!   data segments are a few KiB, cheap to copy.
//! - **Fiber stacks and small linear memories reused** ([`stacks`], [`memories`]): no
//!   `mmap`/`munmap` pair, no TLB shootdown on every core, no page faults per instance.
//! - **Epoch interruption** ticking every [`EPOCH_TICK`]: a CPU-bound guest yields to the
//!   executor at every tick, and gives up its pool slot when others wait for one.

pub mod component_cache;
mod instantiate;
pub mod linker;
mod mapping;
pub mod memories;
pub mod meter;
pub mod registry;
pub mod sandbox;
pub mod stacks;

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

pub use component_cache::{CacheOutcome, ComponentCache, ContentHash};
pub use instantiate::instantiate;
pub use linker::FlowHost;
pub use meter::Meter;
pub use registry::{FlowRegistry, Listed, RegisteredFlow};

use crate::error::LoadError;
use crate::model::EPOCH_TICK;
use crate::wit::FlowPre;
/// Fiber stack of an instance; only touched pages cost RAM.
const ASYNC_STACK_BYTES: usize = 512 << 10;
/// Wasm may use up to this much of the fiber stack; host calls need the rest.
const MAX_WASM_STACK_BYTES: usize = 256 << 10;
/// Memory mappings each resident instance costs with this configuration (measured by
/// `sluice bench`: memory, fiber stack, stack guard page).
pub const MAPPINGS_PER_INSTANCE: u64 = 3;

/// A loaded flow component, ready to instantiate in a store of `T`.
pub struct LoadedComponent<T: 'static> {
    /// Pre-instantiated: imports resolved once, instantiation per instance is cheap.
    pub pre: FlowPre<T>,
    /// SHA-256 of the component's bytes.
    pub hash: ContentHash,
    /// The component's bytes, kept in the store when an instance first runs on them so the
    /// instance stays pinned to this build whatever is deployed later.
    pub bytes: Arc<[u8]>,
    /// Whether compilation was skipped thanks to the cache.
    pub cache: CacheOutcome,
}

impl<T> Clone for LoadedComponent<T> {
    fn clone(&self) -> Self {
        LoadedComponent {
            pre: self.pre.clone(),
            hash: self.hash.clone(),
            bytes: self.bytes.clone(),
            cache: self.cache,
        }
    }
}

/// An engine pair (one per size class) with its linker: compiles components for hosts whose
/// store data is `T`, and instantiates them.
pub struct FlowEngine<T: 'static> {
    small: Flavor<T>,
    large: Flavor<T>,
    cache: ComponentCache,
    metering: Metering,
}

/// An engine and its linker, for components of one size class.
struct Flavor<T: 'static> {
    engine: Engine,
    linker: Linker<T>,
}

impl<T: FlowHost> Flavor<T> {
    fn new(metering: Metering, cow: bool) -> wasmtime::Result<Self> {
        let mut config = engine_config(metering);
        config.memory_init_cow(cow);
        if !cow {
            // Reused memories are wiped and copied into (no copy-on-write image to map).
            config.with_host_memory(Arc::new(memories::MemoryRecycler::new()));
        }
        let engine = Engine::new(&config)?;
        let linker = linker::flow_linker(&engine)?;
        if metering == Metering::Epoch {
            start_epoch_ticker(&engine);
        }
        Ok(Flavor { engine, linker })
    }
}

/// Components this large (Python and JavaScript runtimes carry megabytes of initialized
/// memory) run on an engine with copy-on-write memory init: measured, a Python `hello`
/// instantiates in 1.9 ms instead of 12 ms and a parked one holds 5.5 MiB instead of
/// 11.8 MiB. Small components stay without CoW, which would cost them 4.7 memory
/// mappings per instance instead of 2.9 and so a third of the parked instances.
pub const LARGE_COMPONENT_BYTES: u64 = 1 << 20;

impl<T: FlowHost> FlowEngine<T> {
    /// An engine caching compiled code in `cache`.
    pub fn new(cache: ComponentCache, metering: Metering) -> wasmtime::Result<Self> {
        Ok(FlowEngine {
            small: Flavor::new(metering, false)?,
            large: Flavor::new(metering, true)?,
            cache,
            metering,
        })
    }

    /// How guest CPU use is metered.
    pub fn metering(&self) -> Metering {
        self.metering
    }

    /// Load the component at `path` and check it implements the `flow` world.
    /// Its instances run on the engine of its size class; see [`LARGE_COMPONENT_BYTES`].
    pub fn load(&self, path: &Path) -> Result<LoadedComponent<T>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.into(),
            source,
        })?;
        self.load_bytes(&bytes, path)
    }

    /// [`FlowEngine::load`] from bytes; `path` names the component in errors.
    pub fn load_bytes(&self, bytes: &[u8], path: &Path) -> Result<LoadedComponent<T>, LoadError> {
        let flavor = if bytes.len() as u64 >= LARGE_COMPONENT_BYTES {
            &self.large
        } else {
            &self.small
        };
        let (component, hash, cache) = self.cache.load_bytes(&flavor.engine, bytes, path)?;
        let pre = Self::prepare(flavor, &component, path)?;
        Ok(LoadedComponent {
            pre,
            hash,
            cache,
            bytes: bytes.into(),
        })
    }

    fn prepare(
        flavor: &Flavor<T>,
        component: &Component,
        path: &Path,
    ) -> Result<FlowPre<T>, LoadError> {
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.into(),
            reason: format!("{e:#}"),
        };
        let pre = flavor
            .linker
            .instantiate_pre(component)
            .map_err(wrong_world)?;
        FlowPre::new(pre).map_err(wrong_world)
    }
}

/// How guest CPU use is measured and bounded. Epoch interruption is the default: measured
/// by `sluice bench --only sandbox`, fuel slows call-heavy guests far more, and epoch ticks
/// are what CPU limits and time slices need anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metering {
    /// Epoch ticks: CPU limits, time slices and yielding to the executor.
    #[default]
    Epoch,
    /// Fuel, for comparison only: no CPU limits, yields every 10M units.
    Fuel,
    /// Nothing, for comparison only: a CPU-bound guest never yields.
    Off,
}

fn engine_config(metering: Metering) -> Config {
    let mut config = Config::new();
    match metering {
        Metering::Epoch => {
            config.epoch_interruption(true);
        }
        Metering::Fuel => {
            config.consume_fuel(true);
        }
        Metering::Off => {}
    }
    config
        .memory_init_cow(false)
        .memory_reservation(0)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .memory_may_move(true)
        .async_stack_size(ASYNC_STACK_BYTES)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        .with_host_stack(std::sync::Arc::new(stacks::StackRecycler::new()));
    config
}

/// Advance the engine's epoch every [`EPOCH_TICK`] on a small thread of its own, until
/// the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the epoch thread; CPU-bound flows will not be preempted: {e}"
        );
    }
}

/// How many resident instances fit under the kernel's `vm.max_map_count`, if it can be read.
pub fn resident_capacity_under_map_limit() -> Option<u64> {
    let limit: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Leave room for the process's own mappings (libraries, heap, thread stacks, code).
    Some(limit.saturating_sub(4096) / MAPPINGS_PER_INSTANCE)
}
