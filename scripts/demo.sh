#!/usr/bin/env bash
# The demo: a Sluice node as a user runs it. `sluice serve` runs the demo node (every pool
# has ONE slot), and the `sluice` CLI drives it over its HTTP API: flows that start
# subflows and wait (a fan-out of 1,000 and a chain of 5,000; then, after a live pool
# resize, 20 fan-outs at once), the pools table, a cancel that cascades, and a drain (SIGTERM) that stops the node cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build-guests.sh --quiet
cargo build --quiet --bin sluice
sluice="${CARGO_TARGET_DIR:-target}/debug/sluice"

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work" examples/demo/.node.toml
}
trap cleanup EXIT

# A token for this demo: the node's config keeps only its hash.
made=$("$sluice" token --name demo --permissions 'start:*,read,cancel,operate')
token=$(sed -n 's/^token (shown once; keep it secret): //p' <<<"$made")
{
  cat examples/demo/sluice.toml
  printf '\n[server]\nlisten = "127.0.0.1:0"\ngrace = "10s"\n'
  sed -n '/^\[\[server.tokens\]\]/,$p' <<<"$made"
} > examples/demo/.node.toml   # beside the demo config: its component paths are relative

"$sluice" serve --config examples/demo/.node.toml --data-dir "$work/data" > "$work/serve.out" &
pid=$!
for _ in $(seq 1 600); do
  grep -q '^sluice serving on ' "$work/serve.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "the node did not start" >&2; exit 1; }
  sleep 0.1
done
url=$(sed -n 's/^sluice serving on //p' "$work/serve.out")
[ -n "$url" ] || { echo "the node did not listen in time" >&2; exit 1; }
export SLUICE_NODE="$url" SLUICE_TOKEN="$token"
echo "== A node serves on $url; every pool has one slot. Waiting flows park: no slot, no thread."

echo
echo "== sluice start demo --wait   (fanout of 1000 x hello in 'fanouts', chain of depth 5000 in 'chains')"
"$sluice" start demo --input "${1:-{\"fanout\": 1000, \"chain\": 5000\}}" --wait

echo
echo "== sluice pools resize fanouts --size 2   (live: the next work gets two slots)"
"$sluice" pools resize fanouts --size 2

echo
echo "== 20 fan-outs of 50 started at once, each waiting for its children"
ids=()
for i in $(seq 1 20); do ids+=("$("$sluice" start fanout --input '{"n": 50}' --id "batch-$i")"); done
"$sluice" start sleeper --input '{"ms": 600000}' --id napper >/dev/null
for id in "${ids[@]}"; do "$sluice" result "$id" --wait >/dev/null; done
"$sluice" list --flow fanout --limit 5

echo
echo "== sluice pools"
"$sluice" pools

echo
echo "== sluice status napper   (a 10-minute sleeper, parked)"
"$sluice" status napper

echo
echo "== sluice cancel sleepy-fan   (a fan-out of 30 ten-minute sleepers: it and its 30 parked children end as cancelled)"
"$sluice" start fanout --input '{"n": 30, "child": "sleeper", "input": {"ms": 600000}}' --id sleepy-fan >/dev/null
for _ in $(seq 1 600); do
  [ "$("$sluice" list --parent sleepy-fan --status running --json | grep -o '"id"' | wc -l)" -ge 30 ] && break
  sleep 0.1
done
"$sluice" cancel sleepy-fan
"$sluice" list --parent sleepy-fan --status cancelled --limit 3

echo
echo "== drain: SIGTERM; the node stops admitting, lets running flows park, commits, exits 0"
kill -TERM "$pid"
wait "$pid"
pid=
tail -n 1 "$work/serve.out"
