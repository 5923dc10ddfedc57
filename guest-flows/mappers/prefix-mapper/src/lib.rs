//! Example scheduler mapper: routes a new flow instance by the prefix of its flow name,
//! then by origin, falling back to `default`.
//!
//! | rule | pool |
//! | --- | --- |
//! | flow name `report-…` or `reporting-…` | `reporting` |
//! | flow name `tx-…` | `transactions` |
//! | started by a counterparty | `Peer-Origin` |
//! | anything else | `default` |
//!
//! A rule whose pool the node does not have is skipped: the mapper learns the node's pools
//! in its constructor and never names one that does not exist.

wit_bindgen::generate!({ path: "../../../wit", world: "mapper" });

use exports::sluice::flow::scheduler::{Guest, GuestMapper};
use sluice::flow::types::{Invocation, Origin};

struct PrefixMapper {
    pools: Vec<String>,
}

impl PrefixMapper {
    fn has(&self, pool: &str) -> bool {
        self.pools.iter().any(|p| p == pool)
    }
}

impl GuestMapper for PrefixMapper {
    fn new(pools: Vec<String>) -> Self {
        PrefixMapper { pools }
    }

    fn choose(&self, invocation: Invocation, flow: String, _our_identity: String) -> String {
        let by_prefix = if flow.starts_with("report-") || flow.starts_with("reporting-") {
            Some("reporting")
        } else if flow.starts_with("tx-") {
            Some("transactions")
        } else {
            None
        };
        let by_origin = matches!(invocation.origin, Origin::Peer(_)).then_some("Peer-Origin");
        [by_prefix, by_origin]
            .into_iter()
            .flatten()
            .find(|p| self.has(p))
            .unwrap_or("default")
            .to_string()
    }
}

struct Component;

impl Guest for Component {
    type Mapper = PrefixMapper;
}

export!(Component);
