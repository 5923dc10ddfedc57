//! Test mapper that misbehaves on purpose, by flow name: `trap-…` panics (a trap),
//! `loop-…` never returns, `unknown-…` names a pool that does not exist, `grow-…`
//! allocates without bound. Everything else goes to the pool named in the flow name
//! after `to-` (`to-reporting` → `reporting`), or `default`.

wit_bindgen::generate!({ path: "../../../wit", world: "mapper" });

use exports::sluice::flow::scheduler::{Guest, GuestMapper};
use sluice::flow::types::Invocation;

struct Hostile;

impl GuestMapper for Hostile {
    fn new(_pools: Vec<String>) -> Self {
        Hostile
    }

    fn choose(&self, _invocation: Invocation, flow: String, _our_identity: String) -> String {
        if flow.starts_with("trap-") {
            panic!("mapper refuses {flow}");
        }
        if flow.starts_with("loop-") {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if flow.starts_with("unknown-") {
            return "no-such-pool".into();
        }
        if flow.starts_with("grow-") {
            // Reserve without touching: memory grows fast and cheaply, until the cap stops it.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(Vec::with_capacity(4 << 20));
                std::hint::black_box(&hoard);
            }
        }
        flow.strip_prefix("to-").unwrap_or("default").to_string()
    }
}

struct Component;

impl Guest for Component {
    type Mapper = Hostile;
}

export!(Component);
