#!/usr/bin/env bash
# Prints the directory of the pinned Node runtime bootstrap.sh chose for checkout KB_ROOT ($1, or
# this checkout): .runtime when it holds the pinned version, else the install prefix of a Node of
# that version on PATH (bootstrap.sh uses such a Node as is and fetches nothing into .runtime).
# Exits 1, printing nothing, when there is neither.
set -euo pipefail
root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
lock="$root/daemon/scripts/runtime.lock.json"
[ -f "$lock" ] || { echo "pinned-runtime.sh: no $lock" >&2; exit 1; }
want="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$lock")"
version() { "$1" -p process.versions.node 2>/dev/null || true; }
if [ -x "$root/.runtime/bin/node" ] && [ "$(version "$root/.runtime/bin/node")" = "$want" ]; then
  echo "$root/.runtime"
  exit 0
fi
host="$(command -v node 2>/dev/null || true)"
if [ -n "$host" ]; then
  prefix="$(dirname "$(dirname "$(readlink -f "$host")")")"
  # The prefix must hold bin/node itself (not, say, only a bin/nodejs the PATH entry links to).
  if [ -x "$prefix/bin/node" ] && [ "$(version "$prefix/bin/node")" = "$want" ]; then
    echo "$prefix"
    exit 0
  fi
fi
exit 1
