#!/usr/bin/env bash
# Removes what systemd/install.sh installed. Configuration (/etc/keybroker), data
# (/var/lib/keybroker: tenant files, audit chain; /var/lib/keybroker-token: SoftHSM2 token), logs and the keybroker user
# are kept unless --purge is given.
#
# Usage: uninstall.sh [--destdir=DIR] [--prefix=DIR] [--purge [--yes]]
#   --purge deletes the configuration, all data and the user. With the SoftHSM2 profile the
#   token holds the org keys: every tenant's data becomes undecryptable. Asks for confirmation
#   on a terminal unless --yes is given.
set -euo pipefail

DESTDIR="${DESTDIR:-}"
PREFIX="${PREFIX:-/usr}"
PURGE=no
YES=no

log() { printf '[uninstall] %s\n' "$*" >&2; }
usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
  case "$arg" in
    --destdir=*) DESTDIR="${arg#*=}" ;;
    --prefix=*) PREFIX="${arg#*=}" ;;
    --purge) PURGE=yes ;;
    --yes) YES=yes ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
PREFIX="${PREFIX%/}"
[ -z "$DESTDIR" ] || DESTDIR="${DESTDIR%/}"

LIBDIR="$PREFIX/lib/keybroker"
UNITDIR="${UNITDIR:-$PREFIX/lib/systemd/system}"
SYSUSERSDIR="${SYSUSERSDIR:-$PREFIX/lib/sysusers.d}"
TMPFILESDIR="${TMPFILESDIR:-$PREFIX/lib/tmpfiles.d}"

if [ "$PURGE" = yes ] && [ "$YES" != yes ] && [ -t 0 ]; then
  printf 'Delete /etc/keybroker, /var/lib/keybroker and /var/lib/keybroker-token (all keys and tenant data) and /var/log/keybroker? [y/N] ' >&2
  read -r answer
  case "$answer" in y | Y | yes) ;; *) log "nothing removed"; exit 1 ;; esac
fi

# Stop the service first when this is the live system and systemd runs it.
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl disable --now keybroker.service 2>/dev/null || log "keybroker.service was not enabled"
fi

rm -rf "$DESTDIR$LIBDIR" "$DESTDIR$PREFIX/bin/keybroker"
rm -f "$DESTDIR$UNITDIR/keybroker.service" "$DESTDIR$UNITDIR/keybroker.service.d/restart-backoff.conf"
rmdir "$DESTDIR$UNITDIR/keybroker.service.d" 2>/dev/null || true
rm -f "$DESTDIR$SYSUSERSDIR/keybroker.conf" "$DESTDIR$TMPFILESDIR/keybroker.conf"
log "removed the application, unit, sysusers.d and tmpfiles.d entries"

if [ "$PURGE" = yes ]; then
  rm -rf "$DESTDIR/etc/keybroker" "$DESTDIR/var/lib/keybroker" "$DESTDIR/var/lib/keybroker-token" "$DESTDIR/var/log/keybroker"
  rm -rf "$DESTDIR/etc/systemd/system/keybroker.service.d"
  if [ -z "$DESTDIR" ] && getent passwd keybroker >/dev/null; then
    userdel keybroker
    if getent group keybroker >/dev/null; then groupdel keybroker; fi
  fi
  log "purged configuration, data, logs and the keybroker user"
else
  log "kept /etc/keybroker, /var/lib/keybroker, /var/log/keybroker and the keybroker user (--purge removes them)"
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || log "systemctl daemon-reload failed; run it once systemd is reachable"
fi
