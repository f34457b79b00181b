#!/usr/bin/env bash
# Installs keybroker for real and runs keybroker.service under a real systemd 252 service
# manager, without touching this machine: run it as root inside a private mount namespace
#   unshare -m -i -p --fork --kill-child --mount-proc --propagation private \
#     bash test/systemd/live-unit.sh REPO WORK [DROP-IN...]
# /etc, /usr and /var become overlays whose writes land in WORK; /run is a fresh tmpfs, with a
# journald of our own.
# PID 1 here is not systemd, so the manager is `systemd --user` running as root with
# XDG_CONFIG_HOME=/var/lib and XDG_RUNTIME_DIR=/run: the unit's StateDirectory, RuntimeDirectory
# and credentials resolve to the same paths as under the system manager (ConfigurationDirectory
# becomes /var/lib/keybroker too, LogsDirectory /var/lib/log/keybroker). Units load from
# /etc/systemd/user.
# Prints "@@key value" result lines for test/systemd/service.test.ts; everything else is log.
set -euo pipefail
REPO="$1"
WORK="$2"
shift 2 # the rest: extra drop-ins to install for the run
HSM="${KB_LIVE_HSM:-softhsm2}" # softhsm2, or opencryptoki (with drop-ins/opencryptoki.conf)
emit() { printf '@@%s %s\n' "$1" "$2"; }
step() { printf '== %s\n' "$*" >&2; }

mgr=""
cleanup() {
  daemon_log >"$WORK/daemon.log" 2>/dev/null || true
  if [ -n "$mgr" ] && kill -0 "$mgr" 2>/dev/null; then
    systemctl --user stop keybroker.service >/dev/null 2>&1 || true
    kill "$mgr" 2>/dev/null || true
    wait "$mgr" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 143' INT TERM

[ "$(id -u)" = 0 ] || { echo "live-unit.sh: needs root" >&2; exit 2; }
# PID 1 of a fresh PID namespace (unshare -p --fork): proof that unshare made the namespaces,
# and everything started here dies with it, even if the test runner kills us.
[ "$$" = 1 ] || { echo "live-unit.sh: run me through unshare (see the header), not directly" >&2; exit 2; }

step "overlays on /etc /usr /var, tmpfs on /run"
for d in etc usr var; do
  mkdir -p "$WORK/ov/$d/upper" "$WORK/ov/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$WORK/ov/$d/upper,workdir=$WORK/ov/$d/work" "/$d"
done
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system /run/lock /run/kbtest
# systemd 252's user mode puts StateDirectory= (and ConfigurationDirectory=, LogsDirectory=/log)
# under $XDG_CONFIG_HOME, RuntimeDirectory= and credentials under $XDG_RUNTIME_DIR.
export XDG_RUNTIME_DIR=/run XDG_CONFIG_HOME=/var/lib XDG_STATE_HOME=/var/lib XDG_CACHE_HOME=/var/cache

step "journald of our own (volatile, no kernel log), so StandardOutput=journal is real"
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToKMsg=no\nForwardToConsole=no\nForwardToWall=no\nForwardToSyslog=no\nAudit=no\n' \
  >/etc/systemd/journald.conf.d/zz-kbtest.conf
/lib/systemd/systemd-journald >"$WORK/journald.log" 2>&1 &
for _ in $(seq 1 50); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.1; done
daemon_log() { journalctl -D /run/log/journal --no-pager -o cat -t keybroker; }

step "install.sh into / (creates the user with systemd-sysusers, applies ownership)"
getent passwd keybroker >/dev/null && emit user-before present || emit user-before absent
bash "$REPO/systemd/install.sh" >"$WORK/install.out" 2>&1 && emit install 0 || { emit install $?; cat "$WORK/install.out" >&2; exit 1; }
emit user "$(getent passwd keybroker)"
systemd-tmpfiles --create /usr/lib/tmpfiles.d/keybroker.conf && emit tmpfiles 0

step "provision: PKI from keybroker init, $HSM token, PIN file"
/usr/bin/keybroker init --data-dir "$WORK/pki-src" --port 0 --metrics-port 0 >&2
install -o root -g keybroker -m 0640 "$WORK/pki-src/pki/ca.pem" /etc/keybroker/tls/client-ca.pem
install -o root -g keybroker -m 0640 "$WORK/pki-src/pki/server.pem" /etc/keybroker/tls/server.pem
install -o root -g keybroker -m 0640 "$WORK/pki-src/pki/server-key.pem" /etc/keybroker/tls/server-key.pem
if [ "$HSM" = opencryptoki ]; then
  # Our own slot daemon, shared memory and IPC: the machine's opencryptoki state (used by the HSM
  # tests) is not touched; the token store under /var is in the overlay.
  mount -t tmpfs -o mode=1777 tmpfs /dev/shm
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/opencryptoki.conf
  # Under another name: the host sees this PID namespace's processes, and the HSM tests look for
  # a running slot daemon with `pgrep -x pkcsslotd` (this one is unreachable from outside).
  cp /usr/sbin/pkcsslotd /run/kbtest/kb-pkcsslotd
  /run/kbtest/kb-pkcsslotd
  pin="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" # opencryptoki 3.8: PINs of 4-8 characters
  # C_InitToken with the package's default SO PIN (wipes the overlay copy), then the user PIN.
  KB_PIN="$pin" /usr/lib/keybroker/runtime/bin/node --input-type=module -e "
    import { createRequire } from 'node:module';
    const { PKCS11 } = createRequire('/usr/lib/keybroker/package.json')('pkcs11js');
    const p = new PKCS11();
    p.load('/usr/lib/x86_64-linux-gnu/opencryptoki/libopencryptoki.so.0');
    p.C_Initialize({ flags: 2 });
    const slot = p.C_GetSlotList(false).find((b) => b.readUInt32LE(0) === 3);
    p.C_InitToken(slot, '87654321', 'keybroker'.padEnd(32));
    const s = p.C_OpenSession(slot, 6);
    p.C_Login(s, 0, '87654321');
    p.C_InitPIN(s, process.env.KB_PIN);
    p.C_Logout(s); p.C_CloseSession(s); p.C_Finalize();" >&2
  printf 'KB_HSM_PROFILE=opencryptoki\nKB_HSM_SOFTHSM_CONF=\n' >>/etc/keybroker/keybroker.env
  # The documented step: keybroker joins the pkcs11 group through sysusers.d.
  install -D -m 0644 /usr/lib/keybroker/systemd/sysusers.d/keybroker-opencryptoki.conf /etc/sysusers.d/keybroker-opencryptoki.conf
  systemd-sysusers
  emit pkcs11-group "$(getent group pkcs11)"
  cp "$REPO/systemd/drop-ins/opencryptoki.conf" "$WORK/opencryptoki.conf"
  set -- "$@" "$WORK/opencryptoki.conf"
else
  pin="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  so_pin="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  runuser -u keybroker -- env SOFTHSM2_CONF=/etc/keybroker/softhsm2.conf \
    softhsm2-util --init-token --free --label keybroker --so-pin "$so_pin" --pin "$pin" >&2
fi
install -m 0600 /dev/null /etc/keybroker/pins/hsm-user.pin
printf '%s\n' "$pin" >/etc/keybroker/pins/hsm-user.pin
emit hsm "$HSM"
# Test-only settings through the unit's own EnvironmentFile: free ports (other daemons may run
# on this machine), a ready file to learn them, an org + tenant so that the first start writes
# tenant files and makes keys in the HSM, and the metrics listener on every address so that the
# unit's IP allow-list (localhost only) is what keeps other addresses out.
cat >>/etc/keybroker/keybroker.env <<'EOF'
KB_LISTEN_PORT=0
KB_METRICS_PORT=0
KB_LIFECYCLE_READY_FILE=/run/keybroker/ready.json
KB_BOOTSTRAP_ORG=acme
KB_BOOTSTRAP_TENANTS=sample
KB_METRICS_HOST=0.0.0.0
KB_HSM_PIN_FILE=/etc/keybroker/test-pin/hsm-user.pin
EOF
# Under a user manager the LoadCredential= copy belongs to the manager's user (root), not to
# User= (the system manager hands it to the service user, systemd.exec(5)). The manager still
# loads the credential (checked below), but the daemon reads a keybroker-owned copy instead.
install -d -o root -g keybroker -m 0750 /etc/keybroker/test-pin
install -o keybroker -g keybroker -m 0600 /etc/keybroker/pins/hsm-user.pin /etc/keybroker/test-pin/hsm-user.pin

step "the installed system unit, loaded by the manager from /etc/systemd/user"
mkdir -p /etc/systemd/user/keybroker.service.d
cp /usr/lib/systemd/system/keybroker.service /etc/systemd/user/keybroker.service
for f in "$@"; do cp "$f" /etc/systemd/user/keybroker.service.d/; done

SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_LEVEL=info /lib/systemd/systemd --user >"$WORK/manager.log" 2>&1 &
mgr=$!
for _ in $(seq 1 100); do
  state="$(systemctl --user is-system-running 2>/dev/null || true)"
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done
emit manager "${state:-none}"
# A user manager's notify socket is 0755 (its services normally run as its own user); the
# system manager's is world-writable. Match the system manager so User=keybroker can notify.
chmod 0777 /run/systemd/notify

show() { systemctl --user show keybroker.service -p "$1" --value; }
health() { curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/$2" || true; }

step "systemctl start (Type=notify: returns once READY=1 arrives)"
rc=0; timeout 150 systemctl --user start keybroker.service || rc=$?
emit start "$rc"
for p in ActiveState SubState Result NRestarts StatusText SystemCallErrorNumber LimitNOFILE; do emit "started.$p" "$(show "$p")"; done
pid="$(show MainPID)"
emit started.MainPID "$pid"
if [ "$rc" != 0 ] || [ "$pid" = 0 ]; then
  emit daemon-log "$(daemon_log | tail -c 3000 | base64 -w0)"
  emit manager-log "$(tail -c 3000 "$WORK/manager.log" | base64 -w0)"
  exit 0
fi
ready="$(cat /run/keybroker/ready.json)"
emit ready-file "$ready"
mport="$(sed -n 's/.*"metricsPort":\([0-9]*\).*/\1/p' <<<"$ready")"
emit healthz "$(health "$mport" healthz)"
for _ in $(seq 1 50); do [ "$(health "$mport" readyz)" = 200 ] && break; sleep 0.2; done
emit readyz "$(health "$mport" readyz)"
emit metrics "$(health "$mport" metrics)"
emit metrics-process "$(curl -s -m 5 "http://127.0.0.1:$mport/metrics" | grep -cE '^keybroker_\w*open_fds [0-9]+$' || true)"

step "IPAddressDeny=any + IPAddressAllow=localhost: a non-loopback address is dropped"
ext="$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | grep -v '^127\.' | head -1 || true)"
emit external-address "${ext:-none}"
if [ -n "$ext" ]; then
  emit external.healthz "$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://$ext:$mport/healthz" || true)"
  # What network-clients.conf does, applied to the running unit.
  systemctl --user set-property --runtime keybroker.service "IPAddressAllow=$ext/32"
  # The new allow-list reaches the unit's BPF filter asynchronously: poll (bounded) until it does.
  allowed=000
  for _ in $(seq 1 10); do
    allowed="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://$ext:$mport/healthz" || true)"
    [ "$allowed" = 200 ] && break
    sleep 0.5
  done
  emit external-allowed.healthz "$allowed"
  systemctl --user set-property --runtime keybroker.service IPAddressAllow=
  systemctl --user set-property --runtime keybroker.service IPAddressAllow=localhost
fi

step "the main process as systemd set it up"
for k in Uid Gid NoNewPrivs Seccomp CapEff CapBnd CapAmb; do
  emit "proc.$k" "$(awk -v k="$k:" '$1 == k { $1 = ""; sub(/^ /, ""); print }' "/proc/$pid/status")"
done
emit proc.umask "$(awk '$1 == "Umask:" { print $2 }' "/proc/$pid/status")"
emit proc.nofile "$(awk '/Max open files/ { print $4 ":" $5 }' "/proc/$pid/limits")"
emit proc.uid_map "$(tr -s ' ' <"/proc/$pid/uid_map" | tr '\n' ';')"
# Mount view inside the service: / and /usr read-only, /var/lib/keybroker writable.
for m in / /usr /etc /var/lib/keybroker /tmp /home /root /dev; do
  emit "mount.$m" "$(awk -v m="$m" '$5 == m { print $6 " " $9 " " $4 }' "/proc/$pid/mountinfo" | tail -1)"
done
emit dev-entries "$(ls /proc/$pid/root/dev | tr '\n' ' ')"
emit cmdline "$(tr '\0' ' ' <"/proc/$pid/cmdline")"
emit state-files "$(find /var/lib/keybroker -mindepth 1 -not -path '*/softhsm/*' -printf '%u:%g:%m:%P\n' | sort | tr '\n' ';')"
# The service's view of its credentials (through its mount namespace).
cred="/proc/$pid/root/run/credentials/keybroker.service"
emit credential "$(find "$cred" -type f -printf '%f:%u:%m' 2>/dev/null || true)"
cmp -s "$cred/hsm-user.pin" /etc/keybroker/pins/hsm-user.pin &&
  emit credential-content same || emit credential-content different

step "systemctl reload (ExecReload sends SIGHUP; the daemon answers READY=1 + STATUS)"
t0=$(date +%s%N)
rc=0; timeout 60 systemctl --user reload keybroker.service || rc=$?
emit reload "$rc"
# READY=1 + STATUS= come from a systemd-notify child, possibly after ExecReload ends; it waits
# for the manager's barrier (up to 5 s when it is slow).
for _ in $(seq 1 150); do [ "$(show ActiveState)" = active ] && break; sleep 0.2; done
emit reload-ms "$(( ($(date +%s%N) - t0) / 1000000 ))"
emit reloaded.MainPID "$(show MainPID)"
emit reloaded.ActiveState "$(show ActiveState)"
emit reloaded.healthz "$(health "$mport" healthz)"

step "crash: SIGKILL the main process, Restart=on-failure brings it back"
kill -KILL "$pid"
for _ in $(seq 1 100); do
  npid="$(show MainPID)"
  [ "$npid" != 0 ] && [ "$npid" != "$pid" ] && [ "$(show ActiveState)" = active ] && break
  sleep 0.2
done
emit restarted.NRestarts "$(show NRestarts)"
emit restarted.ActiveState "$(show ActiveState)"
emit restarted.new-pid "$([ "$(show MainPID)" != "$pid" ] && echo yes || echo no)"
ready="$(cat /run/keybroker/ready.json)"
mport="$(sed -n 's/.*"metricsPort":\([0-9]*\).*/\1/p' <<<"$ready")"
emit restarted.healthz "$(health "$mport" healthz)"

step "systemctl stop (SIGTERM: drain, STOPPING=1, exit 0)"
rc=0; timeout 90 systemctl --user stop keybroker.service || rc=$?
emit stop "$rc"
for p in ActiveState Result ExecMainCode ExecMainStatus; do emit "stopped.$p" "$(show "$p")"; done
emit daemon-log "$(daemon_log | tail -c 6000 | base64 -w0)"
# The daemon's JSON lines reached the journal under the unit's SyslogIdentifier and unit name.
emit journal.ready "$(daemon_log | grep -c '"msg":"ready"' || true)"
emit journal.unit "$(journalctl -D /run/log/journal --no-pager -o export -t keybroker | sed -n 's/^_SYSTEMD_UNIT=//p' | sort -u | tr '\n' ' ')"

step "why MemoryDenyWriteExecute= is left out: the installed runtime under it"
mdwe() { systemd-run --user --wait --quiet -p User=keybroker -p "MemoryDenyWriteExecute=$1" \
  /usr/lib/keybroker/runtime/bin/node -e 'let s = 0; for (let i = 0; i < 1e6; i++) s += i;' >/dev/null 2>&1 && echo ok || echo failed; }
emit mdwe.no "$(mdwe no)"
emit mdwe.yes "$(mdwe yes)"

step "uninstall.sh keeps data; --purge removes it"
bash /usr/lib/keybroker/systemd/uninstall.sh >&2 && emit uninstall 0
emit after-uninstall "$(ls -d /usr/lib/keybroker /etc/keybroker /var/lib/keybroker 2>/dev/null | tr '\n' ' ')"
bash "$REPO/systemd/uninstall.sh" --purge --yes >&2 && emit purge 0
emit after-purge "$(ls -d /etc/keybroker /var/lib/keybroker /var/log/keybroker 2>/dev/null | tr '\n' ' ')"
getent passwd keybroker >/dev/null && emit user-after-purge present || emit user-after-purge absent
