#!/usr/bin/env bash
# Builds every guest flow for wasm32-wasip2:
#   Rust flows and mappers -> guest-flows/target/wasm32-wasip2/release/<name>.wasm
#   Python flows (componentize-py, pinned in guest-flows/python/requirements.txt)
#                          -> guest-flows/target/python/<name>.wasm
#   JavaScript flows (componentize-js, pinned in guest-flows/js/package-lock.json)
#                          -> guest-flows/target/js/<name>.wasm
# Python and JS components are rebuilt only when a source is newer. Arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
# Guests keep their own target dir, whatever CARGO_TARGET_DIR the host build uses.
cargo build --manifest-path guest-flows/Cargo.toml --target-dir guest-flows/target --target wasm32-wasip2 --release "$@"

# Is $1 missing or older than any of the other files?
stale() {
  local out=$1; shift
  [ -f "$out" ] || return 0
  local src
  for src in "$@"; do [ "$src" -nt "$out" ] && return 0; done
  return 1
}

py_out=guest-flows/target/python
venv=guest-flows/target/python-venv
mkdir -p "$py_out"
if stale "$venv/bin/componentize-py" guest-flows/python/requirements.txt; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r guest-flows/python/requirements.txt
  touch "$venv/bin/componentize-py"
fi
for app in hello fanout chain sleeper raises seller watcher; do
  if stale "$py_out/$app.wasm" "guest-flows/python/$app.py" guest-flows/python/sluice_flow.py wit/flow.wit; then
    echo "componentize-py: $app" >&2
    "$venv/bin/componentize-py" -d wit -w flow componentize -p guest-flows/python "$app" \
      -o "$py_out/$app.wasm" --stub-wasi >/dev/null
  fi
done

js_out=guest-flows/target/js
mkdir -p "$js_out"
if stale guest-flows/js/node_modules/.bin/componentize-js guest-flows/js/package-lock.json; then
  # Exactly what the lock says, and the lock is never rewritten. It lists the optional
  # per-platform packages of every platform, which `npm ci` requires.
  (cd guest-flows/js && npm ci --silent --no-audit --no-fund)
  touch guest-flows/js/node_modules/.bin/componentize-js
fi
for app in hello fanout chain sleeper throws seller watcher; do
  if stale "$js_out/$app.wasm" "guest-flows/js/$app.js" guest-flows/js/sluice-flow.js wit/flow.wit; then
    echo "componentize-js: $app" >&2
    guest-flows/js/node_modules/.bin/componentize-js "guest-flows/js/$app.js" --wit wit -n flow \
      -o "$js_out/$app.wasm" -d stdio random clocks http fetch-event >/dev/null
  fi
done
