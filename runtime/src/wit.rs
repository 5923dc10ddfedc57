//! The WIT contract on the host side: the private `bindgen!` of the `flow` world in `wit/`,
//! and every conversion between its generated types and the [model](crate::model).
//!
//! Every import is async (suspension points must not hold a thread) and trappable (a host
//! error becomes a trap in the calling instance only). Nothing outside this module and the
//! host implementations uses generated types as domain types.

use crate::model::{FlowError, Invocation, Origin, Priority};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "flow",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "sluice:flow/sessions.session": crate::model::SessionRef,
        },
    });
}

pub use generated::sluice::flow::{host, sessions, types};
pub use generated::{Flow, FlowPre};
pub use types::{FlowError as WitFlowError, LogLevel};

/// The WIT package this runtime implements, as shipped in `wit/`.
pub const WIT: &str = include_str!("../../wit/flow.wit");

impl From<Priority> for types::Priority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Normal => types::Priority::Normal,
            Priority::High => types::Priority::High,
        }
    }
}

impl From<types::Priority> for Priority {
    fn from(p: types::Priority) -> Self {
        match p {
            types::Priority::Normal => Priority::Normal,
            types::Priority::High => Priority::High,
        }
    }
}

impl From<&Origin> for types::Origin {
    fn from(o: &Origin) -> Self {
        match o {
            Origin::Rpc(s) => types::Origin::Rpc(s.clone()),
            Origin::Peer(s) => types::Origin::Peer(s.clone()),
            Origin::Subflow(s) => types::Origin::Subflow(s.clone()),
            Origin::Trigger(s) => types::Origin::Trigger(s.clone()),
        }
    }
}

impl From<&Invocation> for types::Invocation {
    fn from(i: &Invocation) -> Self {
        types::Invocation {
            id: i.id.clone(),
            flow: i.flow.clone(),
            origin: (&i.origin).into(),
            priority: i.priority.into(),
            our_identity: i.our_identity.clone(),
        }
    }
}

impl From<FlowError> for WitFlowError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Failed(m) => WitFlowError::Failed(m),
            FlowError::Cancelled => WitFlowError::Cancelled,
            FlowError::TimedOut => WitFlowError::TimedOut,
            FlowError::Rejected(m) => WitFlowError::Rejected(m),
        }
    }
}

impl From<WitFlowError> for FlowError {
    fn from(e: WitFlowError) -> Self {
        match e {
            WitFlowError::Failed(m) => FlowError::Failed(m),
            WitFlowError::Cancelled => FlowError::Cancelled,
            WitFlowError::TimedOut => FlowError::TimedOut,
            WitFlowError::Rejected(m) => FlowError::Rejected(m),
        }
    }
}

/// An outcome as a flow's `join` or `call` returns it.
pub fn outcome(outcome: crate::model::Outcome) -> Result<Vec<u8>, WitFlowError> {
    outcome.map_err(Into::into)
}
