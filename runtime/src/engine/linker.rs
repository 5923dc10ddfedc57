//! The one linker setup of every host that runs flows: WASI (sandboxed by
//! [`super::sandbox`]) and the `flow` world's imports.

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};
use wasmtime_wasi::WasiView;

use crate::wit::{host, sessions, types};

/// What a host's store data must implement to run flows: WASI and every import of the
/// `flow` world. The node's host, the scripted testing host and the replay host do.
pub trait FlowHost: WasiView + host::Host + types::Host + sessions::Host + Send + 'static {}

impl<T> FlowHost for T where T: WasiView + host::Host + types::Host + sessions::Host + Send + 'static
{}

/// A linker for `engine` with WASI and the flow imports of `T`.
pub fn flow_linker<T: FlowHost>(engine: &Engine) -> wasmtime::Result<Linker<T>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    host::add_to_linker::<_, HasSelf<T>>(&mut linker, |s| s)?;
    sessions::add_to_linker::<_, HasSelf<T>>(&mut linker, |s| s)?;
    Ok(linker)
}
