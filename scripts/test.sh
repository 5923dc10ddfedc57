#!/usr/bin/env bash
# Every test: builds the guest flows and installs the test tools (schemathesis), then runs
# the unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-guests.sh --quiet
./scripts/test-tools.sh
cargo test --workspace "$@"
