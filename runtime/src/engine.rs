//! The one wasmtime [`Engine`] of a node, its [`Linker`], and loading flow components.
//!
//! Choices, and why:
//! - **Pooling allocator** sized by `max-resident`: instantiation in ~10 µs instead of ~25 µs,
//!   and 2 memory mappings per instance instead of 5–7, which is what bounds how many
//!   instances can be parked at once (`vm.max_map_count`), long before RAM does.
//! - **Copy-on-write memory init off**: CoW costs extra mappings per instance; our guests'
//!   data segments are a few KiB, cheap to copy.
//! - **Epoch interruption** ticking every [`EPOCH_TICK`]: a CPU-bound guest yields to the
//!   executor at every tick, and gives up its pool slot when others wait for one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, PoolingAllocationConfig};

use crate::bindings::{FlowPre, sluice::flow::host};
use crate::component_cache::{CacheOutcome, ComponentCache, ContentHash};
use crate::error::LoadError;
use crate::host::HostState;

/// How often the engine's epoch advances: the time slice of a CPU-bound guest.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Most linear memory one flow instance may use.
pub const MAX_MEMORY_BYTES: usize = 64 << 20;
/// Fiber stack of an instance; only touched pages cost RAM.
const ASYNC_STACK_BYTES: usize = 512 << 10;
/// Wasm may use up to this much of the fiber stack; host calls need the rest.
const MAX_WASM_STACK_BYTES: usize = 256 << 10;
/// Core instances a component may contain (Rust guests have 3–4: main plus shims).
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Memory mappings each resident instance costs with this configuration (measured).
pub const MAPPINGS_PER_INSTANCE: u64 = 2;

/// A loaded flow component, ready to instantiate.
#[derive(Clone)]
pub struct LoadedComponent {
    /// Pre-instantiated: imports resolved once, instantiation per instance is cheap.
    pub pre: FlowPre<HostState>,
    /// SHA-256 of the component's bytes.
    pub hash: ContentHash,
    /// Whether compilation was skipped thanks to the cache.
    pub cache: CacheOutcome,
}

/// The node's engine: compiles components, and instantiates them into stores.
pub struct FlowEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ComponentCache,
    max_resident: u32,
    _ticker: Arc<EpochTicker>,
}

impl FlowEngine {
    /// An engine sized for `max_resident` live instances, caching compiled code in `cache`.
    pub fn new(max_resident: u32, cache: ComponentCache) -> wasmtime::Result<Self> {
        let engine = Engine::new(&engine_config(max_resident))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        host::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(&mut linker, |s| s)?;
        let ticker = EpochTicker::start(&engine);
        Ok(FlowEngine { engine, linker, cache, max_resident, _ticker: ticker })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Most instances alive at once.
    pub fn max_resident(&self) -> u32 {
        self.max_resident
    }

    /// Load the component at `path` and check it implements the `flow` world.
    pub fn load(&self, path: &Path) -> Result<LoadedComponent, LoadError> {
        let (component, hash, cache) = self.cache.load(&self.engine, path)?;
        let pre = self.prepare(&component, path)?;
        Ok(LoadedComponent { pre, hash, cache })
    }

    fn prepare(&self, component: &Component, path: &Path) -> Result<FlowPre<HostState>, LoadError> {
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld { path: path.into(), reason: format!("{e:#}") };
        let pre = self.linker.instantiate_pre(component).map_err(wrong_world)?;
        FlowPre::new(pre).map_err(wrong_world)
    }
}

fn engine_config(max_resident: u32) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_resident)
        .total_core_instances(max_resident.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(max_resident)
        .total_tables(max_resident.saturating_mul(2))
        .total_stacks(max_resident)
        .max_memory_size(MAX_MEMORY_BYTES)
        .max_tables_per_module(2);
    let mut config = Config::new();
    config
        .allocation_strategy(pool)
        .epoch_interruption(true)
        .memory_init_cow(false)
        .memory_reservation(MAX_MEMORY_BYTES as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0)
        .async_stack_size(ASYNC_STACK_BYTES)
        .max_wasm_stack(MAX_WASM_STACK_BYTES);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a small thread of its own, until
/// the engine is gone.
struct EpochTicker;

impl EpochTicker {
    fn start(engine: &Engine) -> Arc<Self> {
        let weak = engine.weak();
        let spawned = std::thread::Builder::new().name("sluice-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start the epoch thread; CPU-bound flows will not be preempted: {e}");
        }
        Arc::new(EpochTicker)
    }
}

/// How many resident instances fit under the kernel's `vm.max_map_count`, if it can be read.
pub fn resident_capacity_under_map_limit() -> Option<u64> {
    let limit: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    // Leave room for the process's own mappings (libraries, heap, thread stacks, code).
    Some(limit.saturating_sub(4096) / MAPPINGS_PER_INSTANCE)
}
