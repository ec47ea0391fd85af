#!/usr/bin/env bash
# Alerts across two instances, verified independently: starts two Portcullis instances on one
# database (and one Redis when ALERTS_REDIS_URL is given), then runs interop/alerts.py, whose
# receiver checks every webhook with the `standardwebhooks` package from PyPI.
#
# Usage: interop/alerts.sh BIN
# Environment: ALERTS_DATABASE_URL (default: a SQLite file in a temp dir),
#              ALERTS_REDIS_URL (default: none, in-process stores),
#              INTEROP_START_TIMEOUT (seconds, default 120).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
die() { printf '[alerts] ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf '[alerts] %s\n' "$*"; }

[ $# -eq 1 ] || die "usage: $0 BIN"
BIN="$1"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
[ -x "$BIN" ] || die "not an executable: $BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-alerts.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ "$rc" -ne 0 ]; then
        for f in "$TMP"/server-*.log; do
            [ -f "$f" ] || continue
            echo "---- last 40 lines of $(basename "$f") ----" >&2
            tail -n 40 "$f" >&2
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

log "installing standardwebhooks and requests into a virtualenv"
python3 -m venv "$TMP/venv"
"$TMP/venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$HERE/alerts-requirements.txt"

# Hermetic: drop whatever the caller's environment says about Portcullis.
while IFS= read -r var; do unset "$var"; done \
    < <(env | sed -n 's/^\(PORTCULLIS_[A-Za-z0-9_]*\)=.*/\1/p')

PORT_A="$(free_port)"
PORT_B="$(free_port)"
mkdir -m 0700 "$TMP/keys"
export PORTCULLIS_DATABASE_URL="${ALERTS_DATABASE_URL:-sqlite://$TMP/p.db?mode=rwc}"
SHARED=0
if [ -n "${ALERTS_REDIS_URL:-}" ]; then
    export PORTCULLIS_REDIS_URL="$ALERTS_REDIS_URL"
    export PORTCULLIS_REDIS_PREFIX="alerts-$RANDOM$RANDOM:"
    SHARED=1
fi
export PORTCULLIS_KEYS_DIR="$TMP/keys"
export PORTCULLIS_SEED_PUBLIC_CLIENT=true
export PORTCULLIS_BCRYPT_COST=4
# Both behind one (imagined) load balancer: one issuer.
export PORTCULLIS_ISSUER="http://127.0.0.1:$PORT_A"
export PORTCULLIS_LOG=info
ADMIN_PASSWORD="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"

"$BIN" migrate
printf '%s' "$ADMIN_PASSWORD" | "$BIN" user create --username alerts-admin \
    --email alerts-admin@example.com --password-stdin >/dev/null
"$BIN" user set-roles --username alerts-admin --role admin >/dev/null

for port in "$PORT_A" "$PORT_B"; do
    PORTCULLIS_LISTEN="127.0.0.1:$port" "$BIN" serve >"$TMP/server-$port.log" 2>&1 &
    PIDS+=("$!")
done
deadline=$((SECONDS + ${INTEROP_START_TIMEOUT:-120}))
for port in "$PORT_A" "$PORT_B"; do
    until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:$port/healthz" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || die "instance on $port not healthy"
        sleep 0.3
    done
done
log "two instances up on $PORT_A and $PORT_B (shared store: $SHARED)"

"$TMP/venv/bin/python" "$HERE/alerts.py" "http://127.0.0.1:$PORT_A" "http://127.0.0.1:$PORT_B" \
    alerts-admin "$ADMIN_PASSWORD" "$SHARED"
log "alerts check passed"
