#!/usr/bin/env bash
# Builds every guest flow in guest-flows/ for wasm32-wasip2 (release).
# The components land in guest-flows/target/wasm32-wasip2/release/<name>.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
cargo build --manifest-path guest-flows/Cargo.toml --target wasm32-wasip2 --release "$@"
