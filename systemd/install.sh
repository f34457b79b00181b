#!/usr/bin/env bash
# Installs keybroker for systemd: the application and its pinned Node runtime under
# $PREFIX/lib/keybroker, the unit, sysusers.d and tmpfiles.d entries, a `keybroker` CLI wrapper,
# and (only where none exists yet) an example configuration in /etc/keybroker.
#
# Usage: systemd/install.sh [--destdir=DIR] [--prefix=DIR] [--owner|--no-owner]
#                           [--runtime=DIR] [--restart-backoff=auto|yes|no]
#   DESTDIR and PREFIX may also come from the environment (PREFIX defaults to /usr).
#   The runtime (--runtime or KB_RUNTIME) defaults to the one bootstrap.sh chose: .runtime, or a
#   Node of the pinned version already on PATH (daemon/scripts/pinned-runtime.sh).
#   Ownership (root:keybroker, keybroker:keybroker) is applied when installing into / or with
#   --owner; modes are always applied. Installing into / creates the keybroker user with
#   systemd-sysusers first. Needs a bootstrapped checkout: bash daemon/scripts/bootstrap.sh
set -euo pipefail

KB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr}"
RUNTIME="${KB_RUNTIME:-}"
OWNER=auto
BACKOFF=auto

log() { printf '[install] %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
  case "$arg" in
    --destdir=*) DESTDIR="${arg#*=}" ;;
    --prefix=*) PREFIX="${arg#*=}" ;;
    --runtime=*) RUNTIME="${arg#*=}" ;;
    --owner) OWNER=yes ;;
    --no-owner) OWNER=no ;;
    --restart-backoff=*) BACKOFF="${arg#*=}" ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

case "$PREFIX" in /*) ;; *) die "--prefix must be absolute: $PREFIX" ;; esac
PREFIX="${PREFIX%/}"
[ -n "$PREFIX" ] || die "--prefix must not be /"
if [ -n "$DESTDIR" ]; then
  mkdir -p "$DESTDIR"
  DESTDIR="$(cd "$DESTDIR" && pwd)"
  [ "$DESTDIR" != / ] || DESTDIR=""
fi
[ "$OWNER" != auto ] || { if [ -z "$DESTDIR" ]; then OWNER=yes; else OWNER=no; fi; }

LIBDIR="$PREFIX/lib/keybroker"
BINDIR="$PREFIX/bin"
UNITDIR="${UNITDIR:-$PREFIX/lib/systemd/system}"
SYSUSERSDIR="${SYSUSERSDIR:-$PREFIX/lib/sysusers.d}"
TMPFILESDIR="${TMPFILESDIR:-$PREFIX/lib/tmpfiles.d}"
ETCDIR=/etc/keybroker
STATEDIR=/var/lib/keybroker
# The SoftHSM2 token: outside STATEDIR, never backed up (etc/softhsm2.conf).
TOKENDIR=/var/lib/keybroker-token
LOGDIR=/var/log/keybroker

# --- preconditions: a bootstrapped checkout with the pinned runtime and built node_modules ---
want="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$KB_ROOT/daemon/scripts/runtime.lock.json")"
# The runtime bootstrap.sh chose: .runtime, or a Node of the pinned version already on PATH.
[ -n "$RUNTIME" ] || RUNTIME="$(bash "$KB_ROOT/daemon/scripts/pinned-runtime.sh" "$KB_ROOT" || echo "$KB_ROOT/.runtime")"
[ -x "$RUNTIME/bin/node" ] || die "no runtime at $RUNTIME (run: bash daemon/scripts/bootstrap.sh)"
have="$("$RUNTIME/bin/node" -p process.versions.node)"
[ "$have" = "$want" ] || die "runtime at $RUNTIME is Node $have, the lock file pins $want"
[ -d "$KB_ROOT/node_modules" ] || die "no node_modules (run: bash daemon/scripts/bootstrap.sh)"
command -v npm >/dev/null || die "npm is needed to list the production dependencies"
if [ "$OWNER" = yes ] && [ -n "$DESTDIR" ] && ! getent passwd keybroker >/dev/null; then
  die "--owner: user keybroker does not exist on this host"
fi

# --- stage the application tree next to its destination, then swap it in ---
dest_lib="$DESTDIR$LIBDIR"
stage="$dest_lib.new.$$"
trap 'rm -rf "$stage"' EXIT
rm -rf "$stage" && mkdir -p "$stage"
log "staging $LIBDIR"
app=(daemon/src package.json package-lock.json daemon/scripts/runtime.lock.json)
for p in proto hsm-profiles softhsm-fixtures daemon/bin README.md LICENSE; do
  [ -e "$KB_ROOT/$p" ] && app+=("$p")
done
tar -C "$KB_ROOT" --exclude='*.test.ts' --exclude='.DS_Store' -cf - "${app[@]}" | tar -C "$stage" -xf -

# Production dependencies: the packages of the checkout's node_modules that the lock file's
# production tree needs (native addons already built against the pinned runtime). Nothing is
# downloaded; a package missing from the checkout fails here (npm ls exits non-zero).
prod="$(cd "$KB_ROOT" && PATH="$RUNTIME/bin:$PATH" npm ls --omit=dev --all --parseable --loglevel=error)" ||
  die "npm ls --omit=dev failed: node_modules does not match package-lock.json (run bootstrap.sh)"
printf '%s\n' "$prod" | sed -n "s#^$KB_ROOT/##p" | grep '^node_modules/' | sort -u |
  awk 'NR == 1 || index($0, last "/") != 1 { print; last = $0 }' >"$stage/.prod-packages"
tar -C "$KB_ROOT" --exclude='node_modules/.cache' -cf - -T "$stage/.prod-packages" | tar -C "$stage" -xf -
rm -f "$stage/.prod-packages"

# The runtime: the node binary and its licence; headers and docs are only for building addons.
mkdir -p "$stage/runtime/bin"
cp -a "$RUNTIME/bin/node" "$stage/runtime/bin/node"
for f in LICENSE package.json; do [ -e "$RUNTIME/$f" ] && cp -a "$RUNTIME/$f" "$stage/runtime/$f"; done

# Reference copies of the systemd files (drop-ins are examples: copy the ones you need).
mkdir -p "$stage/systemd"
cp -a "$KB_ROOT/systemd/drop-ins" "$KB_ROOT/systemd/etc" "$stage/systemd/"
mkdir -p "$stage/systemd/sysusers.d"
cp -a "$KB_ROOT/systemd/sysusers.d/keybroker-opencryptoki.conf" "$stage/systemd/sysusers.d/"
cp -a "$KB_ROOT/systemd/uninstall.sh" "$stage/systemd/uninstall.sh"

chmod -R u+rwX,go+rX,go-w "$stage"
chmod 0755 "$stage/runtime/bin/node" "$stage/systemd/uninstall.sh"
rm -rf "$dest_lib.old"
[ ! -e "$dest_lib" ] || mv "$dest_lib" "$dest_lib.old"
mv "$stage" "$dest_lib"
rm -rf "$dest_lib.old"
trap - EXIT

# --- CLI wrapper: the same runtime, entry point and SoftHSM2 config as the unit ---
mkdir -p "$DESTDIR$BINDIR"
cat >"$DESTDIR$BINDIR/keybroker" <<EOF
#!/bin/sh
# keybroker CLI (installed by systemd/install.sh). Run admin commands as the service user:
#   runuser -u keybroker -- keybroker <command>
: "\${SOFTHSM2_CONF:=$ETCDIR/softhsm2.conf}"
export SOFTHSM2_CONF
exec $LIBDIR/runtime/bin/node --max-semi-space-size=16 $LIBDIR/daemon/src/cli/main.ts "\$@"
EOF
chmod 0755 "$DESTDIR$BINDIR/keybroker"

# --- systemd integration files ---
install -d -m 0755 "$DESTDIR$UNITDIR" "$DESTDIR$SYSUSERSDIR" "$DESTDIR$TMPFILESDIR"
sed "s#/usr/lib/keybroker#$LIBDIR#g" "$KB_ROOT/systemd/keybroker.service" >"$DESTDIR$UNITDIR/keybroker.service"
chmod 0644 "$DESTDIR$UNITDIR/keybroker.service"
install -m 0644 "$KB_ROOT/systemd/sysusers.d/keybroker.conf" "$DESTDIR$SYSUSERSDIR/keybroker.conf"
install -m 0644 "$KB_ROOT/systemd/tmpfiles.d/keybroker.conf" "$DESTDIR$TMPFILESDIR/keybroker.conf"

if [ "$BACKOFF" = auto ]; then
  sd_version="$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')"
  if [ "${sd_version:-0}" -ge 254 ]; then BACKOFF=yes; else BACKOFF=no; fi
fi
backoff_dropin="$DESTDIR$UNITDIR/keybroker.service.d/restart-backoff.conf"
if [ "$BACKOFF" = yes ]; then
  install -D -m 0644 "$KB_ROOT/systemd/drop-ins/restart-backoff.conf" "$backoff_dropin"
else
  rm -f "$backoff_dropin"
fi

# --- configuration and data directories (existing configuration is never overwritten) ---
install -d -m 0750 "$DESTDIR$ETCDIR" "$DESTDIR$ETCDIR/tls"
install -d -m 0700 "$DESTDIR$ETCDIR/pins"
for f in keybroker.json keybroker.env softhsm2.conf; do
  if [ -e "$DESTDIR$ETCDIR/$f" ]; then
    log "keeping existing $ETCDIR/$f"
  else
    install -m 0640 "$KB_ROOT/systemd/etc/$f" "$DESTDIR$ETCDIR/$f"
  fi
done
install -d -m 0700 "$DESTDIR$STATEDIR" "$DESTDIR$TOKENDIR" "$DESTDIR$TOKENDIR/tokens"
install -d -m 0750 "$DESTDIR$LOGDIR"

if [ "$OWNER" = yes ]; then
  if ! getent passwd keybroker >/dev/null; then
    [ -z "$DESTDIR" ] || die "--owner: user keybroker does not exist on this host"
    log "creating the keybroker user (systemd-sysusers)"
    systemd-sysusers "$SYSUSERSDIR/keybroker.conf"
  fi
  chown -R root:root "$DESTDIR$LIBDIR" "$DESTDIR$BINDIR/keybroker"
  chown root:keybroker "$DESTDIR$ETCDIR" "$DESTDIR$ETCDIR/tls"
  chown root:root "$DESTDIR$ETCDIR/pins"
  for f in keybroker.json keybroker.env softhsm2.conf; do chown root:keybroker "$DESTDIR$ETCDIR/$f"; done
  chown -R keybroker:keybroker "$DESTDIR$STATEDIR" "$DESTDIR$TOKENDIR" "$DESTDIR$LOGDIR"
fi

log "installed into ${DESTDIR:-/} (prefix $PREFIX)"
# An upgrade under a running daemon: it keeps the modules it already loaded until restarted.
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && systemctl is-active --quiet keybroker.service 2>/dev/null; then
  log "keybroker is running the previous version: systemctl restart keybroker"
fi
cat <<EOF

Next steps on the target machine (as root):
  1. systemd-sysusers $SYSUSERSDIR/keybroker.conf        # creates the keybroker user
  2. systemd-tmpfiles --create $TMPFILESDIR/keybroker.conf  # directories and their modes
  3. Provision the HSM and TLS material (README, systemd section), e.g. for SoftHSM2:
       install -m 0600 /dev/null $ETCDIR/pins/hsm-user.pin   # then write the user PIN into it
       runuser -u keybroker -- env SOFTHSM2_CONF=$ETCDIR/softhsm2.conf \
         softhsm2-util --init-token --free --label keybroker --so-pin ... --pin ...
     and the server certificate, its key and the client CA in $ETCDIR/tls
     (server.pem, server-key.pem, client-ca.pem; root:keybroker 0640). Review $ETCDIR/keybroker.json
     (the first org: "bootstrap": {"org": "NAME", "tenants": []}, or KB_BOOTSTRAP_ORG in keybroker.env).
  4. For HSMs that need devices or a vendor client, copy the matching drop-in from
       $LIBDIR/systemd/drop-ins/ to /etc/systemd/system/keybroker.service.d/
     and network-clients.conf to serve clients beyond this host.
  5. systemctl daemon-reload && systemctl enable --now keybroker
     journalctl -u keybroker -f ; curl -s http://127.0.0.1:9464/healthz
EOF
