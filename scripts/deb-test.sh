#!/usr/bin/env bash
# Build the pinwatch .deb, install it, check what it installed, and run the
# service: with systemd as PID 1 through systemctl; without it (a CI
# container) by running the installed unit's ExecStart line the way the unit
# would (User=pinwatch, AmbientCapabilities CAP_NET_RAW CAP_NET_ADMIN,
# NoNewPrivileges) with setpriv, capturing on a veth in network namespaces
# while curl talks TLS to openssl s_server across it. Then logrotate and
# SIGHUP (the unit's ExecReload), a metrics scrape, SIGTERM (KillSignal),
# and purge. Prints what was and was not exercised.
#
#   scripts/deb-test.sh            # needs root, cargo-deb (CARGO_DEB_VERSION), ip netns
#   KEEP_DEB=1 scripts/deb-test.sh # leave the package installed
#   PINWATCH_DEB_PROFILE=dev scripts/deb-test.sh   # package a dev build (quicker; not for release)
#
# Exit status: 0 all checks passed, 1 a check failed, 77 cannot run here
# (not root / no cargo-deb / no dpkg) unless PINWATCH_DEB_REQUIRED=1, then 1.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}
NS="pwfleet-deb-$$"
NS_S="pwfleet-debs-$$"
PORT=$(( 40000 + RANDOM % 20000 ))
MPORT=$(( 40000 + RANDOM % 20000 ))
WORK=$(mktemp -d /tmp/pwfleet-deb.XXXXXX)
PID=""
SRV=""
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
skip() {
  if [ "${PINWATCH_DEB_REQUIRED:-0}" = 1 ]; then fail "required but cannot run: $*"; fi
  echo "deb-test: SKIPPED: $*"; exit 77
}
ok() { echo "deb-test: ok: $*"; }
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$NS_S" 2>/dev/null || true
  if [ "${KEEP_DEB:-0}" != 1 ] && dpkg -s pinwatch >/dev/null 2>&1; then dpkg --purge pinwatch >/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || skip "needs root (dpkg -i, namespaces)"
command -v dpkg >/dev/null || skip "no dpkg"
if ! cargo deb --version >/dev/null 2>&1; then
  if [ "${CI:-}" = true ] || [ "${PINWATCH_DEB_REQUIRED:-0}" = 1 ]; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
  else
    skip "cargo-deb not installed (cargo install cargo-deb --version $CARGO_DEB_VERSION --locked)"
  fi
fi

# 1. Build (release, feature `live`, from sensor/Cargo.toml [package.metadata.deb]).
deb=$(cargo deb -p pinwatch --locked --profile "${PINWATCH_DEB_PROFILE:-release}" 2>"$WORK/cargo-deb.log" | tail -1) || { cat "$WORK/cargo-deb.log" >&2; fail "cargo deb"; }
[ -f "$deb" ] || fail "no .deb at '$deb'"
ok "built $deb ($(du -h "$deb" | cut -f1))"
depends=$(dpkg-deb -f "$deb" Depends)
case "$depends" in *libpcap*) ;; *) fail "Depends lacks libpcap: $depends" ;; esac

# 2. Install (apt resolves the dependencies dpkg-shlibdeps found).
dpkg --purge pinwatch >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$(realpath "$deb")" >/dev/null || fail "install"
ok "installed: $(dpkg-query -W -f '${Package} ${Version} ${Status}' pinwatch)"

# 3. Files, owners, modes.
want_mode() { # path mode owner:group
  [ -e "$1" ] || fail "$1 missing"
  got=$(stat -c '%a %U:%G' "$1")
  [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
}
want_mode /usr/bin/pinwatch 755 root:root
want_mode /lib/systemd/system/pinwatch.service 644 root:root
want_mode /etc/pinwatch/pinwatch.toml 640 root:pinwatch
want_mode /etc/default/pinwatch 644 root:root
want_mode /etc/logrotate.d/pinwatch 644 root:root
want_mode /var/log/pinwatch 750 pinwatch:pinwatch
want_mode /usr/share/doc/pinwatch/examples/pinwatch.example.toml 644 root:root
want_mode /usr/share/doc/pinwatch/live.md 644 root:root
want_mode /usr/share/doc/pinwatch/operations.md 644 root:root
getent passwd pinwatch | grep ':/usr/sbin/nologin$' >/dev/null || fail "pinwatch user: $(getent passwd pinwatch)"
[ "$(id -u pinwatch)" -lt 1000 ] || fail "pinwatch is not a system user"
for f in /etc/pinwatch/pinwatch.toml /etc/default/pinwatch /etc/logrotate.d/pinwatch; do
  dpkg-query -W -f '${Conffiles}\n' pinwatch | grep " $f " >/dev/null || fail "$f is not a conffile"
done
/usr/bin/pinwatch live --help | grep -- '--metrics-listen' >/dev/null || fail "pinwatch live --help"
ok "files, modes, owners, conffiles, system user"

# 4. Static checks of the unit and the logrotate config.
if command -v systemd-analyze >/dev/null; then
  # Other units on the machine may warn; only pinwatch's own lines count.
  systemd-analyze verify /lib/systemd/system/pinwatch.service >"$WORK/verify.log" 2>&1 || true
  if grep -i "pinwatch" "$WORK/verify.log"; then fail "systemd-analyze verify pinwatch.service"; fi
  ok "systemd-analyze verify: no finding for pinwatch.service"
  if systemd-analyze security --offline=yes /lib/systemd/system/pinwatch.service >"$WORK/security.log" 2>&1; then
    ok "systemd-analyze security: $(grep -i 'overall exposure' "$WORK/security.log" || tail -1 "$WORK/security.log")"
  fi
else
  echo "deb-test: not exercised: systemd-analyze verify (not installed)"
fi
command -v logrotate >/dev/null || fail "logrotate not installed"
logrotate -d /etc/logrotate.d/pinwatch >"$WORK/logrotate-d.log" 2>&1 || { cat "$WORK/logrotate-d.log"; fail "logrotate -d"; }
ok "logrotate -d accepts /etc/logrotate.d/pinwatch"

# 5. Run the service.
unit=/lib/systemd/system/pinwatch.service
unit_val() { sed -n "s/^$1=//p" "$unit" | tail -1; }
[ "$(unit_val User)" = pinwatch ] || fail "User="
[ "$(unit_val AmbientCapabilities)" = "CAP_NET_RAW CAP_NET_ADMIN" ] || fail "AmbientCapabilities="
[ "$(unit_val ExecReload)" = '/bin/kill -HUP $MAINPID' ] || fail "ExecReload="

ip netns add "$NS" || skip "cannot create network namespaces"
ip netns add "$NS_S"
ip -n "$NS" link add pwfleetd0 type veth peer name pwfleetd1 netns "$NS_S"
ip -n "$NS" addr add 10.98.0.1/24 dev pwfleetd0
ip -n "$NS_S" addr add 10.98.0.2/24 dev pwfleetd1
for n in "$NS" "$NS_S"; do ip -n "$n" link set lo up; done
ip -n "$NS" link set pwfleetd0 up
ip -n "$NS_S" link set pwfleetd1 up
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=deb.test \
  -keyout "$WORK/k.pem" -out "$WORK/c.pem" 2>/dev/null
ip netns exec "$NS_S" openssl s_server -quiet -www -accept "$PORT" -key "$WORK/k.pem" -cert "$WORK/c.pem" >/dev/null 2>&1 &
SRV=$!
for _ in $(seq 1 100); do [ -n "$(ip netns exec "$NS_S" ss -Hltn "sport = :$PORT")" ] && break; sleep 0.1; done
tls() {
  for _ in 1 2 3; do
    ip netns exec "$NS" curl -sk --max-time 5 --resolve "$1:$PORT:10.98.0.2" "https://$1:$PORT/" >/dev/null && return 0
    sleep 0.5
  done
  fail "curl https://$1:$PORT/ across the veth"
}

# No systemd as PID 1 here: the unit's own command line, with the unit's
# EnvironmentFile (interfaces replaced by the test veth), as the unit's user
# with the unit's capabilities.
set -a; . /etc/default/pinwatch; set +a
PINWATCH_INTERFACES="-i pwfleetd0"
exec_line=$(unit_val ExecStart)
exec_line=${exec_line//\$PINWATCH_INTERFACES/$PINWATCH_INTERFACES}
exec_line=${exec_line//\$PINWATCH_OPTS/$PINWATCH_OPTS}
# A sensor name and the metrics endpoint, for this test only.
exec_line="$exec_line --sensor-name deb-test --metrics-listen 127.0.0.1:$MPORT"
echo "deb-test: ExecStart as run: $exec_line"
# shellcheck disable=SC2086
ip netns exec "$NS" setpriv --reuid pinwatch --regid pinwatch --init-groups \
  --inh-caps -all,+net_raw,+net_admin --ambient-caps -all,+net_raw,+net_admin \
  --bounding-set -all,+net_raw,+net_admin --no-new-privs \
  $exec_line 2>"$WORK/pinwatch.err" &
PID=$!
for _ in $(seq 1 100); do grep -q "capturing on" "$WORK/pinwatch.err" 2>/dev/null && break; sleep 0.1; done
grep -q "capturing on pwfleetd0" "$WORK/pinwatch.err" || { cat "$WORK/pinwatch.err"; fail "pinwatch did not start capturing"; }
ok "started as the unit would: $(head -1 "$WORK/pinwatch.err")"
status=/proc/$PID/status
[ "$(stat -c %U /proc/$PID)" = pinwatch ] || fail "runs as $(stat -c %U /proc/$PID)"
sleep 0.5
grep -q '^CapEff:\s*0000000000000000' "$status" || fail "capabilities kept after start: $(grep Cap "$status")"
ok "runs as pinwatch; effective capabilities cleared after opening the interface"

# Records are written once a session has ended and its linger passed:
# wait up to 30 s for them.
wait_for() { for _ in $(seq 1 300); do grep "$1" "$2" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
for i in 1 2 3; do tls "a$i.deb.test"; done
wait_for 'a3.deb.test' /var/log/pinwatch/eve.json || true
eve=/var/log/pinwatch/eve.json
[ "$(stat -c '%U' "$eve")" = pinwatch ] || fail "$eve owner"
n1=$(grep -c '"event_type":"tls"' "$eve" || true)
[ "$n1" -ge 1 ] || { ls -l /var/log/pinwatch; fail "no tls record in $eve"; }
grep -q '"host":"deb-test"' "$eve" || fail "no host in records"
ok "$n1 tls records in $eve before rotation"

# logrotate (its postrotate's systemctl fails without systemd and is
# ignored: `|| true`), then the unit's ExecReload: SIGHUP.
logrotate -f /etc/logrotate.d/pinwatch >"$WORK/logrotate.log" 2>&1 || { cat "$WORK/logrotate.log"; fail "logrotate -f"; }
[ -f "$eve.1" ] || fail "logrotate did not rotate: $(ls /var/log/pinwatch)"
kill -HUP "$PID"
sleep 1
for i in 4 5; do tls "b$i.deb.test"; done
wait_for 'b5.deb.test' "$eve" || true
grep -q 'b4.deb.test' "$eve" || fail "no record in the new $eve after SIGHUP"
grep -q 'a1.deb.test' "$eve.1" || fail "old records not in $eve.1"
! grep -q 'b4.deb.test' "$eve.1" || fail "new records went to the rotated file"
ok "logrotate + SIGHUP: old records in eve.json.1, new ones in a fresh eve.json"

ip netns exec "$NS" curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$WORK/metrics.txt"
grep -q '^pinwatch_records_total{event_type="tls"} [1-9]' "$WORK/metrics.txt" || { head -20 "$WORK/metrics.txt"; fail "metrics scrape"; }
if command -v promtool >/dev/null; then promtool check metrics <"$WORK/metrics.txt" || fail "promtool check metrics"; fi
ok "metrics endpoint: $(grep -c '^pinwatch_' "$WORK/metrics.txt") samples"

kill -TERM "$PID"
rc=0
for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "still running 30 s (TimeoutStopSec) after SIGTERM"
wait "$PID" || rc=$?
PID=""
[ "$rc" = 0 ] || { cat "$WORK/pinwatch.err"; fail "exit status $rc after SIGTERM"; }
tail -1 "$eve" | grep '"final":true' >/dev/null || fail "no final stats record"
ok "SIGTERM: exit 0, final stats record"

echo "deb-test: not exercised without systemd as PID 1: systemctl start/reload/stop, the unit's"
echo "deb-test:   sandboxing (ProtectSystem=, SystemCallFilter=, RestrictAddressFamilies=, ...),"
echo "deb-test:   LogsDirectory=, EnvironmentFile= parsing by systemd, Restart=on-failure."

# 6. Purge.
if [ "${KEEP_DEB:-0}" != 1 ]; then
  dpkg --purge pinwatch >/dev/null || fail "purge"
  [ ! -e /usr/bin/pinwatch ] && [ ! -e /etc/pinwatch/pinwatch.toml ] && [ ! -d /var/log/pinwatch ] || fail "purge left files"
  ! getent passwd pinwatch >/dev/null || fail "purge left the user"
  ok "purged: binary, config, logs and user gone"
fi
echo "deb-test: all checks passed"
