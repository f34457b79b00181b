#!/usr/bin/env bash
# Remove a throwaway SoftHSM2 token set created by create-token.sh (DIR as given there).
set -euo pipefail
dir="${1:?usage: wipe-token.sh DIR}"
case "$dir" in /var/lib/softhsm*|/|"") echo "wipe-token.sh: refusing $dir" >&2; exit 2 ;; esac
if [ -f "$dir/softhsm2.conf" ]; then rm -rf "$dir/tokens" "$dir/softhsm2.conf"; fi
rmdir "$dir" 2>/dev/null || true
