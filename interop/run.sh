#!/usr/bin/env bash
# Interop driver: start a throw-away Portcullis and run interop/check.py (authlib + PyJWT)
# and interop/node/code_flow.mjs (openid-client) against it.
#
# Usage: interop/run.sh BIN          e.g. interop/run.sh target/debug/portcullis
#
# Everything lives in a temp dir (SQLite database, keys, server log, Python venv) that is
# removed on exit; the server is stopped on exit. The caller's PORTCULLIS_* configuration
# is ignored, so the run is hermetic (SQLite + in-process store). The Node check needs node
# and npm on PATH; its pinned packages are installed with `npm ci` into interop/node/.
# Environment knobs:
#   INTEROP_VENV=DIR     reuse (or create) this virtualenv instead of a fresh one in the temp dir
#   INTEROP_KEEP=1       keep the temp dir (server log, database) for inspection
#   INTEROP_START_TIMEOUT  seconds to wait for /healthz (default 120; debug builds are slow
#                        to generate their first RSA keys)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
    printf '[interop] ERROR: %s\n' "$*" >&2
    exit 1
}

log() {
    printf '[interop] %s\n' "$*"
}

[ $# -eq 1 ] || die "usage: $0 BIN (path to the portcullis binary)"
BIN="$1"
case "$BIN" in
    /*) ;;
    *) BIN="$PWD/$BIN" ;;
esac
[ -x "$BIN" ] || die "not an executable: $BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-interop.XXXXXX")"
SERVER_PID=""

cleanup() {
    local rc=$?
    set +e
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    if [ "$rc" -ne 0 ] && [ -f "$TMP/server.log" ]; then
        echo "---- last 60 lines of the server log ----" >&2
        tail -n 60 "$TMP/server.log" >&2
        echo "-----------------------------------------" >&2
    fi
    if [ "${INTEROP_KEEP:-0}" = "1" ]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

random_secret() {
    # 32 random bytes, base64url without padding: 43 characters.
    python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
}

# ---- Python environment ---------------------------------------------------------------
PY=python3
VENV="${INTEROP_VENV:-$TMP/venv}"
if [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >/dev/null 2>&1; then
    PY="$VENV/bin/python"
    log "installing Python requirements into a virtualenv"
    "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt"
else
    # No ensurepip (Debian without python3-venv): install for the current user instead.
    log "python3 -m venv unavailable; installing requirements with pip --user"
    python3 -m pip install -q --disable-pip-version-check --user -r "$HERE/requirements.txt" \
        || python3 -m pip install -q --disable-pip-version-check --user --break-system-packages \
            -r "$HERE/requirements.txt"
fi

# ---- server configuration -------------------------------------------------------------
# Hermetic: drop whatever the caller's environment says about Portcullis.
while IFS= read -r var; do
    unset "$var"
done < <(env | sed -n 's/^\(PORTCULLIS_[A-Za-z0-9_]*\)=.*/\1/p')

PORT="$(free_port)"
BASE_URL="http://127.0.0.1:$PORT"
mkdir -m 0700 "$TMP/keys"
export PORTCULLIS_DATABASE_URL="sqlite://$TMP/p.db?mode=rwc"
export PORTCULLIS_KEYS_DIR="$TMP/keys"
export PORTCULLIS_SEED_PUBLIC_CLIENT=true
export PORTCULLIS_BCRYPT_COST=4
export PORTCULLIS_LISTEN="127.0.0.1:$PORT"
export PORTCULLIS_ISSUER="$BASE_URL"
export PORTCULLIS_LOG="${INTEROP_LOG:-info}"

ALICE_PASSWORD="$(random_secret)"
BOB_PASSWORD="$(random_secret)"
RS_SECRET="$(random_secret)"
CODE_SECRET="$(random_secret)"
# Registered for the code-flow clients but never fetched: the checks stop at the 303 to them.
REDIRECT_URI="http://127.0.0.1:9/cb"
POST_LOGOUT_REDIRECT_URI="http://127.0.0.1:9/bye"

log "migrate"
"$BIN" migrate
log "create user alice"
printf '%s' "$ALICE_PASSWORD" | "$BIN" user create --username alice --email alice@example.com --password-stdin >/dev/null
log "create confidential client rs-demo"
"$BIN" client create --client-id rs-demo --secret "$RS_SECRET" \
    --grant-types client_credentials --scopes "articles:read" >/dev/null
log "create user bob (signs in through openid-client)"
printf '%s' "$BOB_PASSWORD" | "$BIN" user create --username bob --email bob@example.com --password-stdin >/dev/null
log "create first-party public client code-public"
"$BIN" client create --client-id code-public --public \
    --grant-types authorization_code,refresh_token --scopes "openid profile email" \
    --redirect-uri "$REDIRECT_URI" --post-logout-redirect-uri "$POST_LOGOUT_REDIRECT_URI" \
    --first-party >/dev/null
log "create third-party confidential client code-confidential"
"$BIN" client create --client-id code-confidential --secret "$CODE_SECRET" \
    --grant-types authorization_code,refresh_token --scopes "openid profile email" \
    --redirect-uri "$REDIRECT_URI" >/dev/null

log "starting $BIN serve on $BASE_URL"
"$BIN" serve >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

deadline=$((SECONDS + ${INTEROP_START_TIMEOUT:-120}))
until "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$BASE_URL/healthz" 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during start-up"
    [ "$SECONDS" -lt "$deadline" ] || die "server not healthy after ${INTEROP_START_TIMEOUT:-120}s"
    sleep 0.3
done
log "server is up (pid $SERVER_PID)"

# Both checks run even when the first fails; the run fails when either did.
rc=0
log "authlib: interop/check.py"
INTEROP_BASE_URL="$BASE_URL" \
    INTEROP_USERNAME=alice \
    INTEROP_PASSWORD="$ALICE_PASSWORD" \
    INTEROP_PUBLIC_CLIENT_ID=portcullis-spa \
    INTEROP_CLIENT_ID=rs-demo \
    INTEROP_CLIENT_SECRET="$RS_SECRET" \
    INTEROP_CODE_CLIENT_ID=code-confidential \
    INTEROP_CODE_CLIENT_SECRET="$CODE_SECRET" \
    INTEROP_CODE_PUBLIC_CLIENT_ID=code-public \
    INTEROP_REDIRECT_URI="$REDIRECT_URI" \
    "$PY" "$HERE/check.py" || rc=1

log "openid-client: npm ci in interop/node"
command -v node >/dev/null || die "node not found (the openid-client check needs Node.js >= 20)"
(cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed"
log "openid-client: interop/node/code_flow.mjs"
INTEROP_BASE_URL="$BASE_URL" \
    INTEROP_USERNAME=bob \
    INTEROP_PASSWORD="$BOB_PASSWORD" \
    INTEROP_CODE_PUBLIC_CLIENT_ID=code-public \
    INTEROP_CODE_CLIENT_ID=code-confidential \
    INTEROP_CODE_CLIENT_SECRET="$CODE_SECRET" \
    INTEROP_REDIRECT_URI="$REDIRECT_URI" \
    INTEROP_POST_LOGOUT_REDIRECT_URI="$POST_LOGOUT_REDIRECT_URI" \
    node "$HERE/node/code_flow.mjs" || rc=1

exit "$rc"
