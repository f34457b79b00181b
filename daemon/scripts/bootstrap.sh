#!/usr/bin/env bash
# Installs everything keybroker needs on a fresh Debian machine, idempotently:
# apt packages (softhsm2, opencryptoki; postgresql only for the tests: kb_apt_test), the pinned
# Node runtime (checked by sha512), and node_modules (npm ci, native addons built against that runtime).
# Source it (". daemon/scripts/bootstrap.sh") to get PATH pointing at the runtime.
set -euo pipefail
KB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export KB_ROOT
LOCK="$KB_ROOT/daemon/scripts/runtime.lock.json"
RT="$KB_ROOT/.runtime"

kb_log() { printf '[bootstrap] %s\n' "$*" >&2; }

kb_apt() {
  local missing=()
  command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
  [ -e /usr/sbin/pkcsslotd ] || missing+=(opencryptoki)
  command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  if [ ${#missing[@]} -gt 0 ]; then
    kb_log "installing apt packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Only the tests need PostgreSQL (the store backend's tests start throwaway servers from Debian's
# binaries); `dev.sh run` on the embedded default never installs it. Called from dev.sh test.
kb_apt_test() {
  kb_promtool
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return
  kb_log "installing apt packages for the tests: postgresql"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

# promtool from Debian's prometheus package checks systemd/monitoring/ in the tests. Only the
# binary is extracted into .runtime/tools: installing the package would start a Prometheus server.
kb_promtool() {
  [ -x "$RT/tools/promtool" ] && return
  kb_log "extracting promtool from Debian's prometheus package"
  local tmp; tmp="$(mktemp -d)"
  if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null)
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$RT/tools" && cp "$tmp/x/usr/bin/promtool" "$RT/tools/promtool"
  rm -rf "$tmp"
}

kb_runtime() {
  local want arch pkg integrity
  want="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$LOCK")"
  # .runtime, or else a Node of the pinned version already installed, is used as is
  # (systemd/install.sh finds the same one).
  local dir
  if dir="$(bash "$KB_ROOT/daemon/scripts/pinned-runtime.sh" "$KB_ROOT")"; then
    export KB_NODE="$dir/bin/node"; return
  fi
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) kb_log "unsupported arch $(uname -m)"; exit 1 ;; esac
  pkg="node-linux-$arch"
  integrity="$(grep -A2 "\"$arch\": {" "$LOCK" | sed -n 's/.*"integrity": "\(.*\)".*/\1/p')"
  local tmp; tmp="$(mktemp -d)"
  kb_log "fetching $pkg@$want"
  # npm pack runs outside the project: the project's devEngines would refuse the host Node.
  (cd "$tmp" && npm pack "$pkg@$want" --silent >/dev/null 2>&1)
  local tgz="$tmp/$pkg-$want.tgz"
  local got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then kb_log "integrity mismatch for $pkg@$want: $got"; rm -rf "$tmp"; exit 1; fi
  rm -rf "$RT.tmp" && mkdir -p "$RT.tmp"
  tar -xzf "$tgz" -C "$RT.tmp" --strip-components=1
  rm -rf "$RT" && mv "$RT.tmp" "$RT" && rm -rf "$tmp"
  export KB_NODE="$RT/bin/node"
}

kb_npm() {
  local stamp="$KB_ROOT/node_modules/.kb-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$KB_ROOT/package-lock.json" ] && [ "$(cat "$stamp")" = "$("$KB_NODE" -p process.version)" ]; then return; fi
  kb_log "npm ci"
  (cd "$KB_ROOT" && npm_config_nodedir="$KB_NODEDIR" npm ci --no-fund --no-audit --loglevel=error)
  "$KB_NODE" -p process.version > "$stamp"
}

kb_apt
kb_runtime
export PATH="$(dirname "$KB_NODE"):$PATH"
# Native addons build against the pinned runtime's headers (include/node), not the host Node 20's (~/.npmrc nodedir).
KB_NODEDIR="$(cd "$(dirname "$KB_NODE")/.." && pwd)"
kb_npm
