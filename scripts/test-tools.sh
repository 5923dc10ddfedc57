#!/usr/bin/env bash
# Tools the tests run besides cargo:
# - schemathesis (PyPI, pinned in tests/schemathesis.txt) in its own venv at
#   .tools/schemathesis, reinstalled only when the pins change;
# - Chromium and chromedriver (Debian's chromium and chromium-driver) for the console's
#   browser tests (tests/all/console.rs), installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.tools/schemathesis
if [ ! -x "$venv/bin/st" ] || [ tests/schemathesis.txt -nt "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/schemathesis.txt
  touch "$venv/bin/st"
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
