//! `noop`: returns its input bytes unchanged, through the raw WIT bindings (no JSON),
//! so benchmarks measure the runtime and not the guest.

use sluice_flow::Invocation;
use sluice_flow::bindings::Guest;

struct Noop;

impl Guest for Noop {
    fn run(_invocation: Invocation, input: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(input)
    }
}

sluice_flow::bindings::export!(Noop);
