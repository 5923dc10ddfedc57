//! A custom scheduler mapper: a component of the WIT world `mapper`, asked for the pool
//! of every new instance.
//!
//! It runs in its own engine with fuel metering (a deterministic CPU budget per call,
//! without slowing flows, whose engine has no fuel) and a small memory cap. Calls are
//! async (WASI's host side needs the executor) and serialized on the one instance. A trap, a budget overrun or an unknown pool name falls back to
//! `default`, is logged once per cause and counted; after a trap the instance is rebuilt,
//! since a trapped component instance cannot be entered again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::Mutex as AsyncMutex;

use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{
    Config, Engine, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::engine::component_cache::check_header;
use crate::error::LoadError;
use crate::model::Invocation;
use crate::wit::types;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mapper",
        with: { "sluice:flow/types": crate::wit::types },
        imports: { default: async },
        exports: { default: async },
    });
}

/// Fuel for one `choose` call (and for the constructor): about a millisecond of work.
pub const MAPPER_FUEL: u64 = 1_000_000;
/// Linear memory a mapper may use.
pub const MAPPER_MEMORY_BYTES: usize = 16 << 20;

/// Why the mapper's answer was not used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// It trapped (or could not be instantiated).
    Trap(String),
    /// It ran past its CPU budget.
    Budget,
    /// It named a pool the node does not have.
    UnknownPool(String),
}

impl Fallback {
    /// The metric label of this cause.
    pub fn cause(&self) -> &'static str {
        match self {
            Fallback::Trap(_) => "trap",
            Fallback::Budget => "budget",
            Fallback::UnknownPool(_) => "unknown-pool",
        }
    }
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Trap(m) => write!(f, "it trapped: {m}"),
            Fallback::Budget => write!(f, "it ran past its CPU budget ({MAPPER_FUEL} fuel)"),
            Fallback::UnknownPool(p) => write!(f, "it chose pool `{p}`, which does not exist"),
        }
    }
}

struct MapperState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for MapperState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct Live {
    store: Store<MapperState>,
    mapper: bindings::Mapper,
    handle: ResourceAny,
}

/// A loaded mapper component and its one live instance.
pub struct ComponentMapper {
    path: PathBuf,
    engine: Engine,
    pre: bindings::MapperPre<MapperState>,
    pools: Vec<String>,
    live: AsyncMutex<Option<Live>>,
    logged: Mutex<HashSet<&'static str>>,
}

impl ComponentMapper {
    /// Load the mapper at `path` and construct it with the node's pool names.
    pub async fn load(path: &Path, pools: Vec<String>) -> Result<Self, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.into(),
            reason: format!("{e:#}"),
        };
        // The pooling allocator keeps the fiber stack of every async call warm: choosing
        // costs a few µs instead of an mmap per call. One instance lives at a time; two
        // slots cover the rebuild after a trap.
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(2)
            .total_core_instances(16)
            .total_memories(2)
            .total_tables(8)
            .total_stacks(2)
            .max_memory_size(MAPPER_MEMORY_BYTES);
        let mut config = Config::new();
        config.consume_fuel(true).allocation_strategy(pool);
        let engine = Engine::new(&config).map_err(invalid)?;
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.into(),
            source,
        })?;
        check_header(&bytes, path)?;
        let component = Component::new(&engine, &bytes).map_err(invalid)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(invalid)?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.into(),
            reason: format!("expected the sluice:flow/mapper world: {e:#}"),
        };
        let pre =
            bindings::MapperPre::new(linker.instantiate_pre(&component).map_err(wrong_world)?)
                .map_err(wrong_world)?;
        let mapper = ComponentMapper {
            path: path.into(),
            engine,
            pre,
            pools,
            live: AsyncMutex::new(None),
            logged: Mutex::new(HashSet::new()),
        };
        // Construct now, so a mapper that cannot even start is a startup error.
        let live = mapper.instantiate().await.map_err(|e| LoadError::Invalid {
            path: path.into(),
            reason: format!("mapper constructor failed: {e}"),
        })?;
        *mapper.live.lock().await = Some(live);
        Ok(mapper)
    }

    /// The component's path, for logs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn instantiate(&self) -> Result<Live, Fallback> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MAPPER_MEMORY_BYTES)
            .trap_on_grow_failure(true)
            .build();
        let state = MapperState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(MAPPER_FUEL)
            .map_err(|e| Fallback::Trap(e.to_string()))?;
        let mapper = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(classify)?;
        let handle = mapper
            .sluice_flow_scheduler()
            .mapper()
            .call_constructor(&mut store, &self.pools)
            .await
            .map_err(classify)?;
        Ok(Live {
            store,
            mapper,
            handle,
        })
    }

    /// Ask the mapper for a pool; the answer is not yet checked against the node's pools.
    pub async fn choose(&self, invocation: &Invocation) -> Result<String, Fallback> {
        let mut live = self.live.lock().await;
        if live.is_none() {
            *live = Some(self.instantiate().await?);
        }
        let Some(current) = live.as_mut() else {
            unreachable!("just set")
        };
        current
            .store
            .set_fuel(MAPPER_FUEL)
            .map_err(|e| Fallback::Trap(e.to_string()))?;
        let asked = types::Invocation::from(invocation);
        let scheduler = current.mapper.sluice_flow_scheduler();
        let answer = scheduler
            .mapper()
            .call_choose(
                &mut current.store,
                current.handle,
                &asked,
                &invocation.flow,
                &invocation.our_identity,
            )
            .await;
        answer.map_err(|e| {
            // A trapped instance cannot be entered again: rebuild it on the next call.
            *live = None;
            classify(e)
        })
    }

    /// Log a fallback the first time its cause is seen; later ones are only counted.
    pub fn log_once(&self, fallback: &Fallback, flow: &str) {
        let first = self
            .logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fallback.cause());
        if first {
            tracing::warn!(
                mapper = %self.path.display(),
                "mapper fallback for flow `{flow}`: {fallback}; using `default` (further `{}` fallbacks are only counted)",
                fallback.cause()
            );
        }
    }
}

fn classify(e: wasmtime::Error) -> Fallback {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Fallback::Budget,
        Some(trap) => Fallback::Trap(trap.to_string()),
        None => Fallback::Trap(format!("{e:#}")),
    }
}
