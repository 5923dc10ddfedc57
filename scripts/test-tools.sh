#!/usr/bin/env bash
# Tools the tests run besides cargo: schemathesis (PyPI, pinned in tests/schemathesis.txt)
# in its own venv at .tools/schemathesis, reinstalled only when the pins change.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/schemathesis
if [ ! -x "$venv/bin/st" ] || [ tests/schemathesis.txt -nt "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis.txt
  touch "$venv/bin/st"
fi
