//! Integration tests: each one runs real guest components (built by
//! `scripts/build-guests.sh`) through a real node.

mod api;
mod browser;
mod cancel;
mod cli;
mod client;
mod console;
mod console_access;
mod drain;
mod durability;
mod durable_node;
mod engine;
mod event_triggers;
mod eviction;
mod failures;
mod faults;
mod first_flow;
mod hospital;
mod ids;
mod layers;
mod mapping;
mod metrics;
mod parking;
mod polyglot;
mod pools;
mod postgres_store;
mod sandbox;
mod schedules;
mod scheduling;
mod schemathesis;
mod served;
mod sessions;
mod store_lock;
mod support;
mod testing;
mod triggers;
