#!/usr/bin/env bash
# Every test: builds the guest flows, then runs the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-guests.sh --quiet
cargo test --workspace "$@"
