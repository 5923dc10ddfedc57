//! Host-side bindings generated from the `flow` world in `wit/`.
//!
//! Every import is async (suspension points must not hold a thread) and
//! trappable (a host error becomes a trap in the calling instance only).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "flow",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "sluice:flow/sessions.session": crate::messaging::SessionRef,
    },
});

pub use self::sluice::flow::types::{FlowError as WitFlowError, LogLevel, Origin, Priority};

/// The WIT package this runtime implements, as shipped in `wit/`.
pub const WIT: &str = include_str!("../../wit/flow.wit");
