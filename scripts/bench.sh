#!/usr/bin/env bash
# Load benchmark for Portcullis: one command, `scripts/bench.sh`.
#
# Builds the release binary, starts it on a free loopback port with a throw-away SQLite
# database (or the PostgreSQL / Redis given in PORTCULLIS_DATABASE_URL / PORTCULLIS_REDIS_URL),
# pins the server to CPU 0 and wrk to CPU 1, and measures:
#   GET  /.well-known/jwks.json                 (200, and 304 with If-None-Match)
#   GET  /.well-known/openid-configuration
#   POST /oauth/token  client_credentials       (Basic auth)
#   POST /oauth/introspect  of a JWT access token (Basic auth)
#   POST /oauth/token  refresh_token            (rotating tokens, see scripts/wrk/refresh.lua)
#   POST /oauth/token  authorization_code       (signed-in browsers' codes, made during the
#                                                run and exchanged at once; then made by one run
#                                                and exchanged alone by the next:
#                                                scripts/wrk/code.lua)
#   POST /oauth/token  password                 (bcrypt at BENCH_BCRYPT_COST, default 12)
# plus the RS256 signing micro benchmark (`cargo bench --bench signing`), the ratios of the
# client_credentials, refresh and code-exchange rates to the raw signing rate of the same run,
# the round trips of one refresh, password grant and code exchange (counted, not timed, by
# tests/api/round_trips.rs on the same storage), the server's peak RSS (VmHWM), and how busy
# the server's core and the load tool's core were during each run (a row whose server core was
# not saturated was limited elsewhere: its rate is a lower bound of the server's), with the CPUs
# that a loopback PostgreSQL and Redis may run on, and the server process's own CPU time per
# request (from which the rate its core alone would allow is derived).
# Results (Markdown summary + raw wrk output + server log) go to bench-results/<timestamp>/.
#
# Environment knobs:
#   BENCH_SECONDS       duration of each wrk run (default 10)
#   BENCH_CONNECTIONS   wrk connections (default 32)
#   BENCH_TIMEOUT       wrk request timeout (default 10s; password grants at cost 12 queue up)
#   BENCH_BCRYPT_COST   bcrypt cost of the benchmarked user and of the server (default 12)
#   BENCH_BROWSERS      browsers signed in (each as its own user) for the code-flow rows
#                       (default: BENCH_CONNECTIONS, so that concurrent exchanges belong to
#                       different users, as in a real deployment)
#   BENCH_BIN           benchmark this binary instead of building target/release/portcullis
#   BENCH_SKIP_SIGNING=1  skip `cargo bench --bench signing`
#   BENCH_SKIP_ROUND_TRIPS=1  skip counting round trips (`cargo test --test tests round_trips`,
#                       which for PostgreSQL creates scratch databases: the role needs CREATEDB)
#   BENCH_LOG           server log filter (default warn: logging must not dominate)
#   PORTCULLIS_DATABASE_URL / PORTCULLIS_REDIS_URL  "with PostgreSQL + Redis" variant
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
BROWSERS="${BENCH_BROWSERS:-$CONNECTIONS}"
WRK_TIMEOUT="${BENCH_TIMEOUT:-10s}"
BCRYPT_COST="${BENCH_BCRYPT_COST:-12}"
SCOPE="articles:read"

log() {
    printf '[bench] %s\n' "$*" >&2
}

die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

for tool in wrk curl python3 taskset; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required (apt-get install wrk curl python3 util-linux)"
done

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

random_secret() {
    python3 -c 'import secrets; print(secrets.token_urlsafe(32))'
}

json_field() { # json_field FIELD  < json
    python3 -c 'import json, sys; v = json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}

# CPU pinning: server on CPU 0, wrk on CPU 1 (no pinning on a single-CPU machine).
if [ "$(nproc)" -ge 2 ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_WRK=(taskset -c 1)
else
    log "warning: fewer than 2 CPUs; running unpinned (numbers will be pessimistic)"
    PIN_SERVER=()
    PIN_WRK=()
fi

# ---- build -------------------------------------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -n "${BENCH_BIN:-}" ]; then
    BIN="$BENCH_BIN"
else
    log "cargo build --release"
    cargo build --release
    BIN="$TARGET_DIR/release/portcullis"
fi
[ -x "$BIN" ] || die "no executable at $BIN"

# ---- result and scratch directories ---------------------------------------------------------
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/bench-results/$STAMP"
mkdir -p "$OUT"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")"
SERVER_PID=""
PEAK_RSS="n/a"

stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    local rc=$?
    set +e
    stop_server
    rm -rf "$TMP"
    if [ "$rc" -ne 0 ]; then
        log "failed (exit $rc); server log: $OUT/server.log"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- server configuration -----------------------------------------------------------------
PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"
STORE="in-process store"
[ -z "${PORTCULLIS_REDIS_URL:-}" ] || STORE="Redis"
RUN_ID="$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
if [ -n "${PORTCULLIS_DATABASE_URL:-}" ]; then
    # Shared database: unique names so that repeated runs do not collide; the keys dir
    # (master key) must be the one that encrypted the signing keys already in that database.
    case "$PORTCULLIS_DATABASE_URL" in
        postgres*) VARIANT="PostgreSQL" ;;
        *) VARIANT="external database ($(printf '%s' "$PORTCULLIS_DATABASE_URL" | cut -d: -f1))" ;;
    esac
    VARIANT="$VARIANT + $STORE"
    export PORTCULLIS_KEYS_DIR="${PORTCULLIS_KEYS_DIR:-$ROOT/keys}"
    CLIENT_ID="bench-$RUN_ID"
    CODE_CLIENT_ID="bench-code-$RUN_ID"
    USER_NAME="bench-$RUN_ID"
    MINT_USER="bench-mint-$RUN_ID"
else
    VARIANT="SQLite (temp file) + $STORE"
    export PORTCULLIS_DATABASE_URL="sqlite://$TMP/bench.db?mode=rwc"
    export PORTCULLIS_KEYS_DIR="$TMP/keys"
    mkdir -m 0700 "$PORTCULLIS_KEYS_DIR"
    CLIENT_ID="bench"
    CODE_CLIENT_ID="bench-code"
    USER_NAME="bench"
    MINT_USER="bench-mint"
fi
export PORTCULLIS_LISTEN="127.0.0.1:$PORT"
export PORTCULLIS_ISSUER="$BASE"
# wrk sends every request from one address: rate limits would measure themselves.
export PORTCULLIS_RATE_LIMIT_ENABLED="${PORTCULLIS_RATE_LIMIT_ENABLED:-false}"
# Lockout counts sign-in attempts while they are in flight, so wrk's connections signing one
# user in from one address would mostly be refused unchecked: lift the thresholds out of reach.
export PORTCULLIS_LOCKOUT_THRESHOLD="${PORTCULLIS_LOCKOUT_THRESHOLD:-1000000}"
export PORTCULLIS_LOCKOUT_IP_THRESHOLD="${PORTCULLIS_LOCKOUT_IP_THRESHOLD:-1000000}"
export PORTCULLIS_LOG="${BENCH_LOG:-warn}"
unset PORTCULLIS_CONFIG

CLIENT_SECRET="$(random_secret)"
USER_PASSWORD="$(random_secret)"
MINT_PASSWORD="$(random_secret)"
BASIC_AUTH="Basic $(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)"

log "migrate ($VARIANT)"
"$BIN" migrate >/dev/null
log "create client $CLIENT_ID and users"
"$BIN" client create --client-id "$CLIENT_ID" --secret="$CLIENT_SECRET" \
    --grant-types client_credentials,refresh_token,password --scopes "$SCOPE" >/dev/null
# The benchmarked user's hash is made at BENCH_BCRYPT_COST: the password benchmark measures
# the real sign-in cost.
printf '%s' "$USER_PASSWORD" | PORTCULLIS_BCRYPT_COST="$BCRYPT_COST" \
    "$BIN" user create --username "$USER_NAME" --email "$USER_NAME@bench.invalid" --password-stdin >/dev/null
# A second user whose hash is made at cost 4 (bcrypt stores the cost in the hash) only to
# mint the starting refresh tokens for the refresh benchmark quickly; it is not measured.
printf '%s' "$MINT_PASSWORD" | PORTCULLIS_BCRYPT_COST=4 \
    "$BIN" user create --username "$MINT_USER" --email "$MINT_USER@bench.invalid" --password-stdin >/dev/null
# A first-party public client for the code flow (no consent page), as an SPA would be.
CODE_REDIRECT="http://127.0.0.1:9/cb"
"$BIN" client create --client-id "$CODE_CLIENT_ID" --public \
    --grant-types authorization_code,refresh_token --scopes "$SCOPE" \
    --redirect-uri "$CODE_REDIRECT" --first-party >/dev/null

if [ "${BENCH_SKIP_SIGNING:-0}" != "1" ]; then
    log "cargo bench --bench signing (before the load runs)"
    cargo bench --bench signing --no-run >/dev/null 2>&1 || true
    "${PIN_SERVER[@]}" cargo bench --bench signing >"$OUT/signing-before.txt" 2>&1 \
        || die "cargo bench --bench signing failed"
fi

log "starting server on $BASE (pinned: ${PIN_SERVER[*]:-none})"
PORTCULLIS_BCRYPT_COST="$BCRYPT_COST" "${PIN_SERVER[@]}" "$BIN" serve >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during start-up (see $OUT/server.log)"
    [ "$SECONDS" -lt "$deadline" ] || die "server not healthy after 60s"
    sleep 0.2
done

# ---- fixtures ----------------------------------------------------------------------------
token_request() { # token_request FORM-ARGS... -> JSON response on stdout
    local args=()
    for kv in "$@"; do
        args+=(--data-urlencode "$kv")
    done
    curl -sS -H "Authorization: $BASIC_AUTH" "${args[@]}" "$BASE/oauth/token"
}

# Starting pool of refresh tokens: twice the connection count (see scripts/wrk/refresh.lua).
POOL_SIZE=$((CONNECTIONS * 2))
log "minting $POOL_SIZE refresh tokens"
: >"$TMP/refresh_tokens.txt"
ACCESS_TOKEN=""
for _ in $(seq 1 "$POOL_SIZE"); do
    resp="$(token_request grant_type=password "username=$MINT_USER" "password=$MINT_PASSWORD" "scope=$SCOPE")"
    rt="$(printf '%s' "$resp" | json_field refresh_token)" || die "password grant failed: $resp"
    [ -n "$rt" ] || die "password grant returned no refresh token: $resp"
    printf '%s\n' "$rt" >>"$TMP/refresh_tokens.txt"
    [ -n "$ACCESS_TOKEN" ] || ACCESS_TOKEN="$(printf '%s' "$resp" | json_field access_token)"
done

# Sanity checks, so that the table never reports the speed of an error path.
cc="$(token_request grant_type=client_credentials "scope=$SCOPE")"
[ -n "$(printf '%s' "$cc" | json_field access_token)" ] || die "client_credentials failed: $cc"
introspection="$(curl -sS -H "Authorization: $BASIC_AUTH" --data-urlencode "token=$ACCESS_TOKEN" "$BASE/oauth/introspect")"
[ "$(printf '%s' "$introspection" | json_field active)" = "True" ] || die "introspection did not say active: $introspection"
pw="$(token_request grant_type=password "username=$USER_NAME" "password=$USER_PASSWORD" "scope=$SCOPE")"
[ -n "$(printf '%s' "$pw" | json_field access_token)" ] || die "password grant (benchmarked user) failed: $pw"

# Browsers signed in on the pages, each as its own user (bcrypt cost 4: made quickly, not
# measured), and their authorization request with one PKCE challenge, for the code-flow rows.
CODE_VERIFIER="$(random_secret)"
CODE_CHALLENGE="$(python3 -c 'import base64, hashlib, sys; print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$CODE_VERIFIER")"
log "signing $BROWSERS browsers in"
BENCH_COOKIES=""
for i in $(seq 1 "$BROWSERS"); do
    browser_user="$MINT_USER-browser-$i"
    printf '%s' "$MINT_PASSWORD" | PORTCULLIS_BCRYPT_COST=4 \
        "$BIN" user create --username "$browser_user" --email "$browser_user@bench.invalid" --password-stdin >/dev/null
    python3 "$ROOT/scripts/wrk/browser_sign_in.py" "$BASE" "$CODE_CLIENT_ID" "$CODE_REDIRECT" \
        "$SCOPE" "$browser_user" "$MINT_PASSWORD" "$CODE_CHALLENGE" >"$TMP/browser.txt" \
        || die "browser sign-in for the code flow failed"
    BENCH_COOKIES="$BENCH_COOKIES$(sed -n 1p "$TMP/browser.txt")
"
done
BENCH_AUTHORIZE_PATH="$(sed -n 2p "$TMP/browser.txt")"
BENCH_CODE_FORM="grant_type=authorization_code&client_id=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$CODE_CLIENT_ID")&redirect_uri=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$CODE_REDIRECT")&code_verifier=$CODE_VERIFIER"

ETAG="$(curl -sS -D - -o /dev/null "$BASE/.well-known/jwks.json" \
    | awk 'tolower($1) == "etag:" { sub(/\r$/, ""); sub(/^[^:]*:[ \t]*/, ""); print; exit }')"
if [ -n "$ETAG" ]; then
    code="$(curl -sS -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$BASE/.well-known/jwks.json")"
    [ "$code" = "304" ] || { log "warning: If-None-Match $ETAG answered $code, not 304"; }
else
    log "warning: /.well-known/jwks.json sent no ETag; skipping the 304 benchmark"
fi

# ---- wrk runs ------------------------------------------------------------------------------
WRK=(wrk -t1 "-c$CONNECTIONS" "-d${SECONDS_PER_RUN}s" --latency --timeout "$WRK_TIMEOUT")
ROWS="$TMP/rows.tsv"
: >"$ROWS"

# Extract requests/s, p50, p99 and error counts from wrk's output.
parse_wrk() { # parse_wrk FILE -> "rps<TAB>p50<TAB>p99<TAB>errors"
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def find(pattern, default="n/a"):
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else default
rps = find(r"^Requests/sec:\s*([\d.]+)")
p50 = find(r"^\s*50(?:\.000)?%\s+(\S+)")
p99 = find(r"^\s*99(?:\.000)?%\s+(\S+)")
non2xx = int(find(r"Non-2xx or 3xx responses:\s*(\d+)", "0"))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
sock = sum(int(x) for x in m.groups()) if m else 0
print(f"{rps}\t{p50}\t{p99}\t{non2xx + sock}")
PY
}

# How busy CPUs 0 and 1 are over SECONDS, from /proc/stat: user, nice, system, irq and softirq
# time over all time (idle, iowait and steal are not busy). Also the CPU time the server's
# process itself used (all its threads, user and system), in cores: with the rate of the same
# run it gives the server's CPU time per request, which does not depend on where the database
# runs (PostgreSQL's and Redis's own work is not the server's).
cpu_ticks() { # cpu_ticks -> "busy total" of CPU 0, then of CPU 1
    awk '$1 == "cpu0" || $1 == "cpu1" { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
server_ticks() { # server_ticks -> utime + stime of the server (fields 14 and 15 of stat)
    sed 's/.*) //' "/proc/$SERVER_PID/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}
CLOCK_TICKS="$(getconf CLK_TCK 2>/dev/null || echo 100)"
cpu_busy() { # cpu_busy SECONDS -> "server%<TAB>load%<TAB>server process cores"
    local before after own_before own_after
    before="$(cpu_ticks)"
    own_before="$(server_ticks)"
    sleep "$1"
    after="$(cpu_ticks)"
    own_after="$(server_ticks)"
    paste <(printf '%s\n' "$before") <(printf '%s\n' "$after") \
        | awk '{ t = $4 - $2; printf "%s%.0f%%", (NR > 1 ? "\t" : ""), (t > 0 ? 100 * ($3 - $1) / t : 0) }'
    awk -v a="${own_before:-}" -v b="${own_after:-}" -v hz="$CLOCK_TICKS" -v s="$1" \
        'BEGIN { if (a == "" || b == "") print "\tn/a"; else printf "\t%.3f\n", (b - a) / hz / s }'
}

run() { # run NAME URL [wrk args...]
    local name="$1" url="$2"
    shift 2
    local file busy
    file="$OUT/wrk-$(printf '%s' "$name" | tr -c 'A-Za-z0-9' '_' | tr -s '_').txt"
    log "wrk: $name"
    # The cores' load over the middle of the run (not its ramp-up and end).
    (sleep 1 && cpu_busy "$((SECONDS_PER_RUN > 3 ? SECONDS_PER_RUN - 2 : 1))" >"$TMP/busy.txt") &
    busy=$!
    "${PIN_WRK[@]}" "${WRK[@]}" "$@" "$url" >"$file" 2>&1 || die "wrk failed for $name (see $file)"
    wait "$busy" || true
    printf '%s\t%s\t%s\n' "$name" "$(parse_wrk "$file")" "$(cat "$TMP/busy.txt" 2>/dev/null || printf 'n/a\tn/a\tn/a')" >>"$ROWS"
    # The server's peak RSS so far, to tell which run raised it.
    awk -v name="$name" '/^VmHWM:/ { printf "%s: %.1f MiB\n", name, $2 / 1024 }' \
        "/proc/$SERVER_PID/status" >>"$OUT/peak-rss.txt" 2>/dev/null || true
}

run "GET /.well-known/jwks.json" "$BASE/.well-known/jwks.json"
if [ -n "$ETAG" ]; then
    run "GET /.well-known/jwks.json (If-None-Match, 304)" "$BASE/.well-known/jwks.json" -H "If-None-Match: $ETAG"
fi
run "GET /.well-known/openid-configuration" "$BASE/.well-known/openid-configuration"

export BENCH_BASIC_AUTH="$BASIC_AUTH"
BENCH_BODY="grant_type=client_credentials&scope=articles%3Aread" \
    run "POST /oauth/token client_credentials" "$BASE/oauth/token" -s "$ROOT/scripts/wrk/form_post.lua"
BENCH_BODY="token=$ACCESS_TOKEN&token_type_hint=access_token" \
    run "POST /oauth/introspect (JWT access token)" "$BASE/oauth/introspect" -s "$ROOT/scripts/wrk/form_post.lua"
BENCH_REFRESH_TOKENS="$TMP/refresh_tokens.txt" \
    run "POST /oauth/token refresh_token (rotating)" "$BASE/oauth/token" -s "$ROOT/scripts/wrk/refresh.lua"
export BENCH_COOKIES BENCH_AUTHORIZE_PATH BENCH_CODE_FORM
BENCH_CODE_MODE=pairs \
    run "GET /oauth/authorize + POST /oauth/token authorization_code (pairs)" "$BASE/oauth/token" -s "$ROOT/scripts/wrk/code.lua"
# The exchange alone, comparable with a refresh: codes made by one run (the authorization
# requests' own row), exchanged by the next, well within their minute.
BENCH_CODE_MODE=mint BENCH_CODE_FILE="$TMP/codes.txt" \
    run "GET /oauth/authorize (signed-in browser; codes for the next row)" "$BASE/oauth/token" -s "$ROOT/scripts/wrk/code.lua"
BENCH_CODE_MODE=exchange BENCH_CODE_FILE="$TMP/codes.txt" \
    run "POST /oauth/token authorization_code (exchange alone)" "$BASE/oauth/token" -s "$ROOT/scripts/wrk/code.lua"
BENCH_BODY="grant_type=password&username=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$USER_NAME")&password=$USER_PASSWORD&scope=articles%3Aread" \
    run "POST /oauth/token password (bcrypt cost $BCRYPT_COST)" "$BASE/oauth/token" -s "$ROOT/scripts/wrk/form_post.lua"

# JWKS while password grants keep the bcrypt pool saturated: a second wrk drives password
# grants for the whole JWKS run (plus a head start), so the pool and its queue stay full.
# The async workers must keep answering JWKS meanwhile.
PASSWORD_BODY="grant_type=password&username=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$USER_NAME")&password=$USER_PASSWORD&scope=articles%3Aread"
log "wrk: password grants in the background (bcrypt saturated)"
BENCH_BODY="$PASSWORD_BODY" "${PIN_WRK[@]}" "${WRK[@]}" -d "$((SECONDS_PER_RUN + 4))s" \
    -s "$ROOT/scripts/wrk/form_post.lua" "$BASE/oauth/token" >"$OUT/wrk-password-background.txt" 2>&1 &
BACKGROUND_WRK=$!
sleep 2
run "GET /.well-known/jwks.json while password grants saturate bcrypt" "$BASE/.well-known/jwks.json"
wait "$BACKGROUND_WRK" || log "background password wrk ended with an error (see wrk-password-background.txt)"

# Peak resident set size of the server over the whole run.
if [ -r "/proc/$SERVER_PID/status" ]; then
    PEAK_RSS="$(awk '/^VmHWM:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$SERVER_PID/status")"
fi
stop_server

# ---- signing micro benchmark ----------------------------------------------------------------
# Run before the server starts and again after it stopped, on the server's core: on a shared
# host the rate moves, so the ratios below use the mean of the two and both are reported.
SIGN_RATE="n/a"
SIGN_BEFORE="n/a"
SIGN_AFTER="n/a"
signing_rate() { # signing_rate FILE -> rs256_sign_per_sec
    "${PIN_SERVER[@]}" cargo bench --bench signing >"$1" 2>&1 || die "cargo bench --bench signing failed"
    awk -F': *' '/^rs256_sign_per_sec:/ { print $2; exit }' "$1"
}
if [ "${BENCH_SKIP_SIGNING:-0}" != "1" ]; then
    log "cargo bench --bench signing (after the load runs)"
    SIGN_AFTER="$(signing_rate "$OUT/signing.txt")"
    SIGN_BEFORE="$(awk -F': *' '/^rs256_sign_per_sec:/ { print $2; exit }' "$OUT/signing-before.txt" 2>/dev/null || true)"
    SIGN_RATE="$(python3 -c '
import sys
rates = [float(r) for r in sys.argv[1:] if r.replace(".", "", 1).isdigit()]
print(f"{sum(rates) / len(rates):.0f}" if rates else "n/a")' "${SIGN_BEFORE:-}" "${SIGN_AFTER:-}")"
fi
ratio() { # ratio RATE SIGN_RATE
    python3 -c '
import sys
try:
    print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")
except (ValueError, ZeroDivisionError):
    print("n/a")' "${1:-n/a}" "${2:-n/a}"
}
CC_RATE="$(awk -F'\t' '$1 == "POST /oauth/token client_credentials" { print $2 }' "$ROWS")"
REFRESH_RATE="$(awk -F'\t' '$1 == "POST /oauth/token refresh_token (rotating)" { print $2 }' "$ROWS")"
CODE_RATE="$(awk -F': *' '/^code exchanges per second:/ { print $2; exit }' "$OUT"/wrk-*authorization_code_pairs*.txt 2>/dev/null || true)"
EXCHANGE_RATE="$(awk -F': *' '/^code exchanges per second:/ { print $2; exit }' "$OUT"/wrk-*exchange_alone*.txt 2>/dev/null || true)"
INTROSPECT_RATE="$(awk -F'\t' '$1 == "POST /oauth/introspect (JWT access token)" { print $2 }' "$ROWS")"
JWKS_RATE="$(awk -F'\t' '$1 == "GET /.well-known/jwks.json" { print $2 }' "$ROWS")"
RATIO="$(ratio "$CC_RATE" "$SIGN_RATE")"
REFRESH_RATIO="$(ratio "$REFRESH_RATE" "$SIGN_RATE")"
CODE_RATIO="$(ratio "$CODE_RATE" "$SIGN_RATE")"
EXCHANGE_RATIO="$(ratio "$EXCHANGE_RATE" "$SIGN_RATE")"
INTROSPECT_RATIO="$(ratio "$INTROSPECT_RATE" "$JWKS_RATE")"

# The server's CPU time per request (its process, all threads, over the middle of the run),
# and the rate it would reach if its core were its only limit: a row whose core was not
# saturated (PostgreSQL sharing a core, wrk's core full) can be read with these. A derived figure,
# not a measured rate.
per_request_us() { # per_request_us CORES RATE -> "123 µs"
    python3 -c '
import sys
try:
    print(f"{1e6 * float(sys.argv[1]) / float(sys.argv[2]):.0f} µs")
except (ValueError, ZeroDivisionError):
    print("n/a")' "${1:-n/a}" "${2:-n/a}"
}
core_bound() { # core_bound ROW_NAME -> "N/s (R of raw signing)"
    awk -F'\t' -v name="$1" '$1 == name { print $2, $8 }' "$ROWS" | python3 -c '
import sys
try:
    rate, cores = (float(x) for x in sys.stdin.read().split())
    bound = rate / cores
    sign = float(sys.argv[1])
    print(f"{bound:.0f}/s ({bound / sign:.2f} of raw signing)")
except (ValueError, ZeroDivisionError):
    print("n/a")' "$SIGN_RATE"
}

# ---- round trips, counted ------------------------------------------------------------------
# tests/api/round_trips.rs counts the statements sent to the database and the calls made to
# the store by one request of each kind, on the storage of this run.
ROUND_TRIPS="not counted (BENCH_SKIP_ROUND_TRIPS=1)"
if [ "${BENCH_SKIP_ROUND_TRIPS:-0}" != "1" ]; then
    log "cargo test --test tests round_trips"
    (
        unset PORTCULLIS_TEST_DATABASE_URL PORTCULLIS_TEST_REDIS_URL
        case "$PORTCULLIS_DATABASE_URL" in
            postgres*) export PORTCULLIS_TEST_DATABASE_URL="$PORTCULLIS_DATABASE_URL" ;;
        esac
        [ -z "${PORTCULLIS_REDIS_URL:-}" ] || export PORTCULLIS_TEST_REDIS_URL="$PORTCULLIS_REDIS_URL"
        cargo test --test tests round_trips -- --nocapture --test-threads 1
    ) >"$OUT/round_trips.txt" 2>&1 || log "warning: counting round trips failed (see round_trips.txt)"
    # libtest prints a test's output on the line of its name: find the figures anywhere.
    ROUND_TRIPS="$(grep -oE '(refresh|password|code exchange|authorization request|client_credentials|introspection): Trips \{ db: [0-9]+, store: [0-9]+ \}' "$OUT/round_trips.txt" \
        | sed -E 's/: Trips \{ db: ([0-9]+), store: ([0-9]+) \}/: \1 database statements + \2 store calls/' \
        | paste -sd ';' - | sed 's/;/; /g')"
    ROUND_TRIPS="${ROUND_TRIPS:-n/a (see round_trips.txt)}"
fi

# The CPUs that the processes listening for the database and the store may run on (loopback
# services only; another host's are not this machine's concern).
service_cpus() {
    local url port pid out=""
    for url in "${PORTCULLIS_DATABASE_URL:-}" "${PORTCULLIS_REDIS_URL:-}"; do
        case "$url" in
            postgres*) port=5432 ;;
            redis*) port=6379 ;;
            *) continue ;;
        esac
        port="$(python3 -c 'import sys, urllib.parse; u = urllib.parse.urlsplit(sys.argv[1]); print(u.port or sys.argv[2]) if u.hostname in ("127.0.0.1", "localhost", "::1") else print("")' "$url" "$port")"
        [ -n "$port" ] || { out="$out${out:+; }${url%%:*} not on loopback"; continue; }
        pid="$(ss -ltnpH "sport = :$port" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -n1 | cut -d= -f2)"
        out="$out${out:+; }${url%%:*} (port $port): $( [ -n "$pid" ] && taskset -pc "$pid" 2>/dev/null | sed 's/.*: //' || echo unknown)"
    done
    echo "${out:-none (embedded SQLite and in-process store)}"
}

# ---- report --------------------------------------------------------------------------------
SUMMARY="$OUT/summary.md"
{
    echo "# Portcullis load benchmark ($STAMP)"
    echo
    echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "- CPU: $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown); server pinned to CPU 0, wrk to CPU 1"
    echo "- storage: $VARIANT"
    echo "- CPUs the storage services may run on: $(service_cpus)"
    echo "- wrk: -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s --latency --timeout $WRK_TIMEOUT; bcrypt cost $BCRYPT_COST"
    echo
    echo "| endpoint | requests/s | p50 | p99 | errors | CPU 0 (server) busy | CPU 1 (wrk) busy | server CPU per request |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    while IFS=$'\t' read -r name rps p50 p99 errors server_busy load_busy server_cores; do
        echo "| $name | $rps | $p50 | $p99 | $errors | $server_busy | $load_busy | $(per_request_us "$server_cores" "$rps") |"
    done <"$ROWS"
    echo
    echo "- raw RS256 signing rate (cargo bench --bench signing, on the server's core): $SIGN_RATE /s (mean of $SIGN_BEFORE before and $SIGN_AFTER after the load runs)"
    echo "- RS256 verification with the key parsed once (the server's path): $(awk -F': *' '/^rs256_verify_preparsed_per_sec:/ { print $2; exit }' "$OUT/signing.txt" 2>/dev/null)/s; through jsonwebtoken: $(awk -F': *' '/^rs256_verify_per_sec:/ { print $2; exit }' "$OUT/signing.txt" 2>/dev/null)/s"
    echo "- client_credentials rate / raw signing rate: $RATIO"
    echo "- refresh rate / raw signing rate: $REFRESH_RATIO"
    echo "- code exchanges alone: ${EXCHANGE_RATE:-n/a}/s (codes made by the row before); / raw signing rate: $EXCHANGE_RATIO"
    echo "- code exchanges with their authorization requests: ${CODE_RATE:-n/a}/s (each after its own GET /oauth/authorize in the same run); / raw signing rate: $CODE_RATIO"
    echo "- introspection rate / JWKS rate: $INTROSPECT_RATIO"
    echo "- if the server's core were its only limit (rate / server process cores used, a derived figure): client_credentials $(core_bound "POST /oauth/token client_credentials"); refresh $(core_bound "POST /oauth/token refresh_token (rotating)"); code exchange alone $(core_bound "POST /oauth/token authorization_code (exchange alone)")"
    echo "- round trips per request (tests/api/round_trips.rs on this storage; a transaction adds BEGIN and COMMIT on SQLite): $ROUND_TRIPS"
    echo "- server peak RSS (VmHWM): $PEAK_RSS (after each run: $(paste -sd ';' "$OUT/peak-rss.txt" 2>/dev/null | sed 's/;/; /g'))"
    echo
    echo "errors = non-2xx/3xx responses + socket errors (connect, read, write, timeout)."
    grep -h '^refresh pool:\|^code flow' "$OUT"/wrk-*.txt 2>/dev/null | sed 's/^/- /' || true
} >"$SUMMARY"

cat "$SUMMARY"
log "results in bench-results/$STAMP/"
