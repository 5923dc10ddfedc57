#!/usr/bin/env bash
# The demo: a node whose pools each have one slot runs a flow that fans out to 1,000
# children and a chain of 5,000 nested subflows at once, and reports what ran where.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-guests.sh --quiet

echo "== Every pool has one slot. Waiting flows are parked: they hold no slot and no thread."
echo "== demo starts fanout(1000 x hello) in pool 'fanouts' and chain(depth 5000) in pool 'chains'."
cargo run --quiet --bin sluice -- run demo --config examples/demo/sluice.toml \
  --input "${1:-{\"fanout\": 1000, \"chain\": 5000\}}" --report

echo
echo "== A trade over a session: buyer (default pool) talks to its responder seller (Peer-Origin)."
cargo run --quiet --bin sluice -- run buyer --config examples/trade/sluice.toml \
  --input '{"item": "bond", "bid": 45}' --report
