#!/usr/bin/env bash
# The second demo: two nodes on loopback, PartyA and PartyB, every pool of size 1 on both.
# PartyA starts many `buyer` flows (children of one fan-out); each opens a session with
# PartyB, sends two messages and waits for the answer; PartyB answers each from a `seller`
# responder in its Peer-Origin pool. Then a report of what ran where.
#   ./scripts/demo-peers.sh [buyers]      (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
buyers="${1:-1000}"
./scripts/build-guests.sh --quiet
cargo build --quiet --bin sluice
sluice="$PWD/${CARGO_TARGET_DIR:-target}/debug/sluice"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work" examples/peers/.party-*.toml examples/peers/.to-*.token
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# `sluice token` prints a token and its hash: the API token, and the two peer tokens.
token_of() { sed -n 's/^token (shown once; keep it secret): //p' <<<"$1"; }
hash_of() { sed -n 's/^sha256 = "\(.*\)"$/\1/p' <<<"$1"; }
api=$("$sluice" token --name demo --permissions 'start:*,read,cancel,operate')
a_to_b=$("$sluice" token --name a-to-b --permissions read)
b_to_a=$("$sluice" token --name b-to-a --permissions read)
token_of "$a_to_b" > examples/peers/.to-b.token
token_of "$b_to_a" > examples/peers/.to-a.token
port_a=$(free_port); port_b=$(free_port)

node_config() { # party, own port, peer, peer port, token file, accepted hash
  cat "examples/peers/party-$(tr '[:upper:]' '[:lower:]' <<<"${1: -1}").toml"
  printf '\n[server]\nlisten = "127.0.0.1:%s"\ngrace = "10s"\n' "$2"
  sed -n '/^\[\[server.tokens\]\]/,$p' <<<"$api"
  printf '\n[peers.%s]\nurl = "http://127.0.0.1:%s"\ntoken-file = "%s"\naccepts = "%s"\n' "$3" "$4" "$5" "$6"
}
node_config PartyA "$port_a" PartyB "$port_b" .to-b.token "$(hash_of "$b_to_a")" > examples/peers/.party-a.toml
node_config PartyB "$port_b" PartyA "$port_a" .to-a.token "$(hash_of "$a_to_b")" > examples/peers/.party-b.toml

serve() { # party letter
  "$sluice" serve --config "examples/peers/.party-$1.toml" --data-dir "$work/$1" > "$work/$1.out" 2> "$work/$1.err" &
  pids+=($!)
  for _ in $(seq 1 600); do
    grep -q '^sluice serving on ' "$work/$1.out" 2>/dev/null && return
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/$1.err" >&2; echo "node $1 did not start" >&2; exit 1; }
    sleep 0.1
  done
  echo "node $1 did not listen in time" >&2; exit 1
}
serve a; serve b
export SLUICE_TOKEN; SLUICE_TOKEN=$(token_of "$api")
at() { SLUICE_NODE="http://127.0.0.1:$1" "$sluice" "${@:2}"; }
echo "== PartyA serves on 127.0.0.1:$port_a, PartyB on 127.0.0.1:$port_b; every pool on both has one slot."

echo
echo "== PartyA: sluice start fanout --wait   ($buyers buyers, each in a session with PartyB)"
started=$(date +%s.%N)
at "$port_a" start fanout --id market --wait \
  --input "{\"n\": $buyers, \"child\": \"buyer\", \"input\": {\"party\": \"PartyB\", \"item\": \"widget\", \"bid\": 70}}" \
  > "$work/market.json"
took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
python3 - "$work/market.json" "$took" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
results = out.get("results", out.get("output", {}).get("results", []))
accepted = sum(1 for r in results if r.get("accepted"))
print(f"{len(results)} buyers answered in {sys.argv[2]} s: {accepted} bids accepted, at {sorted({r['price'] for r in results})} each")
PY

echo
echo "== What ran where: PartyA's pools"
at "$port_a" pools
echo "== PartyB's pools (the sellers ran in Peer-Origin)"
at "$port_b" pools

echo
echo "== One seller on PartyB"
at "$port_b" list --flow seller --limit 3

echo
echo "== The peers as each node sees them"
at "$port_a" peers
at "$port_b" peers
