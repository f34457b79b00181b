#!/usr/bin/env bash
# The README's two commands:
#   bash daemon/scripts/dev.sh run    install everything, then run the daemon on the embedded default
#                                     (SQLite under ./.data, SoftHSM2 token under ./.data-token, created on first run)
#   bash daemon/scripts/dev.sh test   install everything, then run the full test suite
set -euo pipefail
cmd="${1:-}"; shift || true
# KB_DATA_DIR is the data dir for both this script and the daemon (it overrides the config's
# `dataDir`). Made absolute here, from the caller's directory, before the cd below: the daemon
# resolves a relative dataDir against the config file's directory, which would nest it twice.
if [ -n "${KB_DATA_DIR:-}" ]; then KB_DATA_DIR="$(realpath -m -- "$KB_DATA_DIR")"; export KB_DATA_DIR; fi
if [ "$cmd" = data-dir ]; then
  # the data dir `run` uses (absolute), for scripts and tests; installs nothing
  echo "${KB_DATA_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.data}"; exit 0
fi
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bootstrap.sh"
cd "$KB_ROOT"
case "$cmd" in
  run)
    data="${KB_DATA_DIR:-$KB_ROOT/.data}"
    if [ ! -f "$data/keybroker.json" ]; then node daemon/src/cli/main.ts init --data-dir "$data"; fi
    exec node --max-semi-space-size=16 daemon/src/cli/main.ts serve --config "$data/keybroker.json" "$@"
    ;;
  test)
    kb_apt_test
    echo "== typecheck"; npx tsc -p tsconfig.json
    echo "== lint"; npm run -s lint
    if [ -f daemon/scripts/check-protos.sh ]; then echo "== protos"; bash daemon/scripts/check-protos.sh; fi
    echo "== tests"
    # Each test file is its own process with its own SoftHSM2 token.
    exec node --test --test-reporter=spec --test-timeout=600000 "test/**/*.test.ts" "$@"
    ;;
  *) echo "usage: dev.sh run|test|data-dir [args]" >&2; exit 2 ;;
esac
