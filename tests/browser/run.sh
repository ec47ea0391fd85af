#!/usr/bin/env bash
# Browser end-to-end driver: start a throw-away Portcullis and the example SPA
# (examples/spa), then let headless Chromium (playwright-core, tests/browser/e2e.mjs) sign in
# through the authorization code flow with PKCE, refresh, list sessions, sign out, probe
# the login page (wrong password, lockout, CSRF, clickjacking headers), authorize Swagger
# UI at /docs (the seeded client portcullis-spa, code flow with PKCE in a popup) to call the API,
# and sign in through upstream providers: a second Portcullis standing in for Google, and a
# GitHub-shaped server (tests/browser/github.mjs).
#
# Usage: tests/browser/run.sh BIN        e.g. tests/browser/run.sh target/debug/portcullis
#
# Needs Node.js 20+ with npm (playwright-core's minimum), and Chromium (Debian's /usr/bin/chromium; no browser is ever
# downloaded). Everything lives in a temp dir (SQLite database, keys, logs, Chromium profile)
# that is removed on exit; the server and the SPA server are stopped on exit. The caller's
# PORTCULLIS_* configuration is ignored, so the run is hermetic (SQLite + in-process store).
# Environment knobs:
#   E2E_CHROMIUM=PATH      the Chromium binary (default /usr/bin/chromium)
#   E2E_TIMEOUT_MS=N       per-step timeout in the browser test (default 20000)
#   BROWSER_KEEP=1         keep the temp dir (logs, database) for inspection
#   BROWSER_START_TIMEOUT  seconds to wait for /healthz (default 120; debug builds are slow
#                          to generate their first RSA keys)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SPA_DIR="$ROOT/examples/spa"

die() {
    printf '[browser] ERROR: %s\n' "$*" >&2
    exit 1
}

log() {
    printf '[browser] %s\n' "$*"
}

[ $# -eq 1 ] || die "usage: $0 BIN (path to the portcullis binary)"
BIN="$1"
case "$BIN" in
    /*) ;;
    *) BIN="$PWD/$BIN" ;;
esac
[ -x "$BIN" ] || die "not an executable: $BIN"
command -v node >/dev/null || die "node not found (install Node.js 20 or later)"
command -v npm >/dev/null || die "npm not found"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
    || die "Node.js $(node --version) is too old: playwright-core needs 20 or later"
export E2E_CHROMIUM="${E2E_CHROMIUM:-/usr/bin/chromium}"
[ -x "$E2E_CHROMIUM" ] || die "no Chromium at $E2E_CHROMIUM (apt-get install chromium)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-browser.XXXXXX")"
SERVER_PID=""
SPA_PID=""
UP_PID=""
GH_PID=""

stop() {
    local pid="$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

cleanup() {
    local rc=$?
    set +e
    stop "$SPA_PID"
    stop "$SERVER_PID"
    stop "$UP_PID"
    stop "$GH_PID"
    if [ "$rc" -ne 0 ]; then
        for f in server spa upstream github; do
            [ -s "$TMP/$f.log" ] || continue
            echo "---- last 60 lines of the $f log ----" >&2
            tail -n 60 "$TMP/$f.log" >&2
            echo "-------------------------------------" >&2
        done
    fi
    if [ "${BROWSER_KEEP:-0}" = "1" ]; then
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
    node -e 'const s = require("net").createServer();
s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

random_secret() {
    # 32 random bytes, base64url without padding: 43 characters.
    node -e 'console.log(require("crypto").randomBytes(32).toString("base64url"))'
}

# Exit 0 when URL answers 2xx.
http_ok() {
    node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) })
.then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1));' "$1"
}

# ---- Node packages (exactly the locked versions) ---------------------------------------
log "npm ci (examples/spa: oidc-client-ts; tests/browser: playwright-core)"
(cd "$SPA_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# ---- server configuration -------------------------------------------------------------
# Hermetic: drop whatever the caller's environment says about Portcullis.
while IFS= read -r var; do
    unset "$var"
done < <(env | sed -n 's/^\(PORTCULLIS_[A-Za-z0-9_]*\)=.*/\1/p')

PORT="$(free_port)"
SPA_PORT="$(free_port)"
while [ "$SPA_PORT" = "$PORT" ]; do SPA_PORT="$(free_port)"; done
BASE_URL="http://127.0.0.1:$PORT"
SPA_URL="http://127.0.0.1:$SPA_PORT"
mkdir -m 0700 "$TMP/keys"
export PORTCULLIS_DATABASE_URL="sqlite://$TMP/p.db?mode=rwc"
export PORTCULLIS_KEYS_DIR="$TMP/keys"
export PORTCULLIS_BCRYPT_COST=4
export PORTCULLIS_LISTEN="127.0.0.1:$PORT"
export PORTCULLIS_ISSUER="$BASE_URL"
export PORTCULLIS_LOCKOUT_THRESHOLD=3
export PORTCULLIS_RATE_LIMIT_ENABLED=false
export PORTCULLIS_LOG="${BROWSER_LOG:-info}"
# Seed Swagger UI's public client (portcullis-spa, redirect URI {issuer}/docs/oauth-receiver.html):
# by default only the embedded database gets it, and this run names its own database.
export PORTCULLIS_SEED_PUBLIC_CLIENT=true

ALICE_PASSWORD="$(random_secret)"
BOB_PASSWORD="$(random_secret)"
CAROL_PASSWORD="$(random_secret)"

log "migrate"
"$BIN" migrate
log "create users alice, bob and carol"
printf '%s' "$ALICE_PASSWORD" | "$BIN" user create --username alice --email alice@example.com --password-stdin >/dev/null
printf '%s' "$BOB_PASSWORD" | "$BIN" user create --username bob --email bob@example.com --password-stdin >/dev/null
printf '%s' "$CAROL_PASSWORD" | "$BIN" user create --username carol --email carol@example.com --password-stdin >/dev/null
log "create public client spa-demo for $SPA_URL"
"$BIN" client create --client-id spa-demo --public \
    --grant-types authorization_code,refresh_token --scopes "openid profile email" \
    --redirect-uri "$SPA_URL/callback.html" --post-logout-redirect-uri "$SPA_URL/" >/dev/null

# ---- social sign-in: a second Portcullis as "Google", a GitHub-shaped server ------------
# The upstream is addressed as localhost, the server as 127.0.0.1: two hosts, so the browser
# keeps their cookies apart (cookies ignore ports).
UP_PORT="$(free_port)"
GH_PORT="$(free_port)"
UP_URL="http://localhost:$UP_PORT"
GWEN_PASSWORD="$(random_secret)"
UP_SECRET="$(random_secret)"
GH_SECRET="$(random_secret)"
mkdir -m 0700 "$TMP/up-keys"
# The upstream's settings; `env` runs the binary in its own process (exec), so the pid `$!`
# names after `up serve &` is the server's own, and the clean-up stops it.
UP_ENV=(PORTCULLIS_DATABASE_URL="sqlite://$TMP/up.db?mode=rwc" PORTCULLIS_KEYS_DIR="$TMP/up-keys"
    PORTCULLIS_LISTEN="127.0.0.1:$UP_PORT" PORTCULLIS_ISSUER="$UP_URL")
up() {
    env "${UP_ENV[@]}" "$BIN" "$@"
}
log "upstream Portcullis at $UP_URL: user gwen, client downstream"
up migrate
printf '%s' "$GWEN_PASSWORD" | up user create --username gwen --email gwen@example.com \
    --password-stdin --email-verified >/dev/null
up client create --client-id downstream --secret "$UP_SECRET" --grant-types authorization_code \
    --scopes "openid profile email" --redirect-uri "$BASE_URL/ui/upstream/google/callback" \
    --first-party >/dev/null
log "identity providers google (the upstream Portcullis) and github (127.0.0.1:$GH_PORT)"
printf '%s' "$UP_SECRET" | "$BIN" idp add --id google --kind oidc --display-name Google \
    --issuer "$UP_URL" --client-id downstream --client-secret-stdin --allow-signup >/dev/null
printf '%s' "$GH_SECRET" | "$BIN" idp add --id github --kind github --display-name GitHub \
    --auth-base-url "http://127.0.0.1:$GH_PORT" --api-base-url "http://127.0.0.1:$GH_PORT" \
    --client-id Iv1.portcullis --client-secret-stdin --allow-signup >/dev/null
env "${UP_ENV[@]}" "$BIN" serve >"$TMP/upstream.log" 2>&1 &
UP_PID=$!
GH_PORT="$GH_PORT" GH_CLIENT_ID=Iv1.portcullis GH_CLIENT_SECRET="$GH_SECRET" \
    node "$HERE/github.mjs" >"$TMP/github.log" 2>&1 &
GH_PID=$!

log "starting $BIN serve on $BASE_URL"
"$BIN" serve >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

log "starting the SPA on $SPA_URL"
SPA_PORT="$SPA_PORT" SPA_AUTHORITY="$BASE_URL" SPA_CLIENT_ID=spa-demo \
    node "$SPA_DIR/serve.mjs" >"$TMP/spa.log" 2>&1 &
SPA_PID=$!

deadline=$((SECONDS + ${BROWSER_START_TIMEOUT:-120}))
until http_ok "$BASE_URL/healthz"; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during start-up"
    [ "$SECONDS" -lt "$deadline" ] || die "server not healthy after ${BROWSER_START_TIMEOUT:-120}s"
    sleep 0.3
done
log "server is up (pid $SERVER_PID)"
until http_ok "$UP_URL/healthz"; do
    kill -0 "$UP_PID" 2>/dev/null || die "the upstream server exited during start-up"
    [ "$SECONDS" -lt "$deadline" ] || die "the upstream server is not healthy"
    sleep 0.3
done
log "upstream is up (pid $UP_PID)"
until http_ok "$SPA_URL/config.js"; do
    kill -0 "$SPA_PID" 2>/dev/null || die "the SPA server exited during start-up"
    [ "$SECONDS" -lt "$deadline" ] || die "the SPA server did not answer"
    sleep 0.2
done
log "SPA is up (pid $SPA_PID)"

# TMPDIR: Chromium's throw-away profile goes into the temp dir too.
TMPDIR="$TMP" \
    E2E_ISSUER="$BASE_URL" \
    E2E_SPA_URL="$SPA_URL" \
    E2E_CLIENT_ID=spa-demo \
    E2E_ALICE_PASSWORD="$ALICE_PASSWORD" \
    E2E_BOB_PASSWORD="$BOB_PASSWORD" \
    E2E_CAROL_PASSWORD="$CAROL_PASSWORD" \
    E2E_UPSTREAM_ISSUER="$UP_URL" \
    E2E_GWEN_PASSWORD="$GWEN_PASSWORD" \
    node "$HERE/e2e.mjs"
