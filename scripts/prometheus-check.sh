#!/usr/bin/env bash
# The monitoring files and a real Prometheus against two throw-away Portcullis instances.
#
# Usage: scripts/prometheus-check.sh BIN      e.g. scripts/prometheus-check.sh target/debug/portcullis
#
# What it does (needs `prometheus` and `promtool` on PATH: Debian's `prometheus` package):
#   1. promtool check rules / check config / test rules on the shipped deploy/prometheus files;
#   2. starts two instances of BIN on free loopback ports sharing one SQLite database and one
#      keys folder in a temp dir (embedded default otherwise): instance A serves /metrics on
#      its main listener, instance B on a separate listener (PORTCULLIS_METRICS_LISTEN), and
#      B's main listener must answer 404 for /metrics;
#   3. starts Prometheus on a free loopback port (its own temp storage) with a generated
#      configuration that scrapes both every second and loads deploy/prometheus/rules.yml;
#   4. waits until Prometheus's HTTP API reports both targets up and a
#      portcullis_http_requests_total series for each, the shipped rules evaluate without
#      error, and every query of deploy/grafana/portcullis.json is accepted;
#   5. stops everything and removes the temp dir, whatever happened.
# Exits non-zero if any of that does not hold. The caller's PORTCULLIS_* configuration is
# ignored, so the run is hermetic.
#
# Environment knobs:
#   PROMETHEUS_CHECK_TIMEOUT   seconds to wait for each step (default 60)
#   PROMETHEUS_CHECK_KEEP=1    keep the temp dir (logs, database, Prometheus data)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$ROOT/deploy"
TIMEOUT="${PROMETHEUS_CHECK_TIMEOUT:-60}"

die() {
    printf '[prometheus-check] ERROR: %s\n' "$*" >&2
    exit 1
}

log() {
    printf '[prometheus-check] %s\n' "$*"
}

[ $# -eq 1 ] || die "usage: $0 BIN (path to the portcullis binary)"
BIN="$1"
case "$BIN" in
    /*) ;;
    *) BIN="$PWD/$BIN" ;;
esac
[ -x "$BIN" ] || die "not an executable: $BIN"
command -v prometheus >/dev/null || die "prometheus not on PATH (apt-get install prometheus)"
command -v promtool >/dev/null || die "promtool not on PATH (apt-get install prometheus)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-prometheus.XXXXXX")"
PIDS=()

stop() { # PID
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 0
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
    for pid in "${PIDS[@]}"; do
        stop "$pid"
    done
    if [ "$rc" -ne 0 ]; then
        for f in "$TMP"/*.log; do
            [ -f "$f" ] || continue
            echo "---- last 20 lines of $(basename "$f") ----" >&2
            tail -n 20 "$f" >&2
        done
    fi
    if [ "${PROMETHEUS_CHECK_KEEP:-0}" = "1" ]; then
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

# GET URL: prints the HTTP status, then the body (nothing on a connection error).
get() {
    python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
        print(resp.status); print(resp.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode(errors="replace"))
except Exception:
    pass
PY
}

# wait_for WHAT COMMAND...: retries COMMAND until it succeeds, for at most TIMEOUT seconds.
wait_for() {
    local what="$1"
    shift
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "a process exited while waiting for $what"
        done
        [ "$SECONDS" -lt "$deadline" ] || die "$what: not after ${TIMEOUT}s"
        sleep 0.5
    done
    log "$what"
}

# ---- 1. the shipped files -------------------------------------------------------------
log "$(promtool --version 2>&1 | head -n 1)"
promtool check rules "$DEPLOY/prometheus/rules.yml"
promtool check config "$DEPLOY/prometheus/prometheus.yml"
promtool test rules "$DEPLOY/prometheus/rules.test.yml"

# ---- 2. two instances on one database ------------------------------------------------------
while IFS= read -r var; do
    unset "$var"
done < <(env | sed -n 's/^\(PORTCULLIS_[A-Za-z0-9_]*\)=.*/\1/p')

PORT_A="$(free_port)"
PORT_B="$(free_port)"
METRICS_B="$(free_port)"
mkdir -m 0700 "$TMP/keys"
export PORTCULLIS_DATABASE_URL="sqlite://$TMP/p.db?mode=rwc"
export PORTCULLIS_KEYS_DIR="$TMP/keys"
export PORTCULLIS_MAIL_DIR="$TMP/mail"
export PORTCULLIS_ISSUER="http://127.0.0.1:$PORT_A"
export PORTCULLIS_BCRYPT_COST=4
export PORTCULLIS_LOG=warn
export NO_COLOR=1

ready() { # BASE
    [ "$(get "$1/readyz" | head -n 1)" = "200" ]
}

log "migrate"
"$BIN" migrate >"$TMP/migrate.log" 2>&1 || die "migrate failed"
log "starting instance A on 127.0.0.1:$PORT_A (/metrics on its main listener)"
PORTCULLIS_LISTEN="127.0.0.1:$PORT_A" "$BIN" serve >"$TMP/instance-a.log" 2>&1 &
PIDS+=($!)
wait_for "instance A is ready" ready "http://127.0.0.1:$PORT_A"
log "starting instance B on 127.0.0.1:$PORT_B (/metrics on 127.0.0.1:$METRICS_B)"
PORTCULLIS_LISTEN="127.0.0.1:$PORT_B" PORTCULLIS_METRICS_LISTEN="127.0.0.1:$METRICS_B" \
    "$BIN" serve >"$TMP/instance-b.log" 2>&1 &
PIDS+=($!)
wait_for "instance B is ready" ready "http://127.0.0.1:$PORT_B"

[ "$(get "http://127.0.0.1:$PORT_B/metrics" | head -n 1)" = "404" ] \
    || die "instance B's main listener serves /metrics although PORTCULLIS_METRICS_LISTEN moved it"
metrics_listener_up() {
    [ "$(get "http://127.0.0.1:$METRICS_B/metrics" | head -n 1)" = "200" ]
}
wait_for "instance B's metrics listener answers" metrics_listener_up

# ---- 3. Prometheus ----------------------------------------------------------------------
PROM_PORT="$(free_port)"
PROM="http://127.0.0.1:$PROM_PORT"
TARGET_A="127.0.0.1:$PORT_A"
TARGET_B="127.0.0.1:$METRICS_B"
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $DEPLOY/prometheus/rules.yml
scrape_configs:
  - job_name: portcullis
    static_configs:
      - targets: ["$TARGET_A", "$TARGET_B"]
EOF
promtool check config "$TMP/prometheus.yml" >/dev/null
log "starting Prometheus on $PROM"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)

# ---- 4. what Prometheus sees ---------------------------------------------------------------
# query PROMQL CHECK: runs an instant query; CHECK (Python, over `result`, the list of
# series) must hold.
query() {
    python3 - "$PROM" "$1" "$2" <<'PY'
import json, sys, urllib.parse, urllib.request
base, promql, check = sys.argv[1:4]
url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
try:
    with urllib.request.urlopen(url, timeout=5) as resp:
        answer = json.load(resp)
except Exception:
    sys.exit(1)
result = answer.get("data", {}).get("result", [])
sys.exit(0 if answer.get("status") == "success" and eval(check) else 1)
PY
}
both="{s['metric'].get('instance') for s in result} >= {'$TARGET_A', '$TARGET_B'}"
wait_for "Prometheus reports both targets up" \
    query 'up{job="portcullis"} == 1' "$both"
wait_for "Prometheus has portcullis_http_requests_total for both instances" \
    query 'sum by (instance) (portcullis_http_requests_total)' "$both"
query 'portcullis_build_info' "$both" || die "portcullis_build_info missing for an instance"

rules_evaluated() {
    python3 - "$PROM" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/api/v1/rules", timeout=5) as resp:
        groups = json.load(resp)["data"]["groups"]
except Exception:
    sys.exit(1)
rules = [r for g in groups for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") != "ok"]
if bad:
    print("rules not (yet) evaluated cleanly: " + ", ".join(bad), file=sys.stderr)
sys.exit(0 if rules and not bad else 1)
PY
}
wait_for "every shipped alerting rule evaluates without error" rules_evaluated

python3 - "$PROM" "$DEPLOY/grafana/portcullis.json" <<'PY' || die "a query of the Grafana dashboard is refused by Prometheus"
import json, sys, urllib.error, urllib.parse, urllib.request
base, path = sys.argv[1:3]
dashboard = json.load(open(path))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
failed = []
for expr in exprs:
    promql = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            ok = json.load(resp).get("status") == "success"
    except urllib.error.HTTPError as e:
        ok = False
        promql += " -> " + e.read().decode(errors="replace")[:200]
    if not ok:
        failed.append(promql)
for f in failed:
    print("refused: " + f, file=sys.stderr)
print(f"[prometheus-check] {len(exprs) - len(failed)} of {len(exprs)} dashboard queries accepted")
sys.exit(1 if failed or not exprs else 0)
PY

log "passed"
