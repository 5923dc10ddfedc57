//! Integration tests: each one runs real guest components (built by
//! `scripts/build-guests.sh`) through a real node.

mod cli;
mod durability;
mod durable_node;
mod engine;
mod eviction;
mod failures;
mod first_flow;
mod hospital;
mod mapping;
mod metrics;
mod parking;
mod polyglot;
mod pools;
mod sandbox;
mod scheduling;
mod sessions;
mod support;
mod testing;
