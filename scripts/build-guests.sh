#!/usr/bin/env bash
# Builds every guest flow in guest-flows/ for wasm32-wasip2 (release).
# The components land in guest-flows/target/wasm32-wasip2/release/<name>.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
# Guests keep their own target dir, whatever CARGO_TARGET_DIR the host build uses.
cargo build --manifest-path guest-flows/Cargo.toml --target-dir guest-flows/target --target wasm32-wasip2 --release "$@"
