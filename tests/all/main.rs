//! Integration tests: each one runs real guest components (built by
//! `scripts/build-guests.sh`) through a real node.

mod cli;
mod engine;
mod failures;
mod parking;
mod pools;
mod support;
