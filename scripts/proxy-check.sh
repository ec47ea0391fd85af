#!/usr/bin/env bash
# Runs the proxy of docker-compose.yml (deploy/nginx/portcullis.conf) for real, without
# Docker: nginx in front of two local Portcullis instances that share one PostgreSQL database
# and one Redis, then checks what the deployment promises:
#   - /readyz, discovery, JWKS and a client-credentials token request through the proxy;
#   - requests are balanced over both instances (each instance has its own request-id prefix);
#   - the issuer is the proxy's https URL and Strict-Transport-Security is sent;
#   - the client address is taken from X-Forwarded-For only when the proxy sent it: a client
#     of the proxy is recorded with its own address whatever headers it invents, and a header
#     sent straight to an instance is ignored.
#
# Usage (a fresh database is created on the given server and dropped afterwards):
#   PORTCULLIS_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
#   PORTCULLIS_REDIS_URL=redis://127.0.0.1:6379 scripts/proxy-check.sh
# Needs nginx, openssl, curl, jq and psql. Uses target/debug/portcullis (built if missing;
# PORTCULLIS_BIN to choose another). Loopback addresses: clients 127.0.0.3, the proxy's
# upstream connections 127.0.0.2 (the instances trust only that address).
#
# What differs from docker-compose.yml: the upstream addresses, the certificate paths, the
# listening address (substituted below), the proxy's source address (proxy_bind, added), and on
# nginx older than 1.25.1 `http2 on;` becomes `listen ... http2`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[proxy-check] %s\n' "$*" >&2; }
die() {
    printf '[proxy-check] ERROR: %s\n' "$*" >&2
    exit 1
}

for tool in nginx openssl curl jq psql python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
: "${PORTCULLIS_DATABASE_URL:?set PORTCULLIS_DATABASE_URL to a PostgreSQL server URL}"
: "${PORTCULLIS_REDIS_URL:?set PORTCULLIS_REDIS_URL}"

BIN="${PORTCULLIS_BIN:-$ROOT/target/debug/portcullis}"
if [[ ! -x "$BIN" ]]; then
    log "building $BIN"
    cargo build --quiet
fi

WORK="$(mktemp -d)"
PIDS=()
DB_NAME="portcullis_proxy_check_$(openssl rand -hex 6)"
SERVER_URL="$PORTCULLIS_DATABASE_URL"
DB_URL="${SERVER_URL%/*}/$DB_NAME"

cleanup() {
    set +e
    if [[ -f "$WORK/nginx.pid" ]]; then
        kill "$(cat "$WORK/nginx.pid")" 2>/dev/null
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    sleep 0.5
    psql -q "$SERVER_URL" -c "DROP DATABASE IF EXISTS $DB_NAME" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
P1="$(free_port)"
P2="$(free_port)"
PP="$(free_port)"
ISSUER="https://localhost:$PP"

psql -q "$SERVER_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null

# The proxy's certificate: self-signed for localhost, as README suggests for a local try.
mkdir -p "$WORK/tls" "$WORK/tmp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
CA="$WORK/tls/cert.pem"

# The compose file's nginx configuration, with local addresses.
sed -e "s#portcullis-1:8080#127.0.0.1:$P1#" \
    -e "s#portcullis-2:8080#127.0.0.1:$P2#" \
    -e "s#/etc/nginx/tls/#$WORK/tls/#g" \
    -e "s#listen 8443 ssl;#listen 127.0.0.1:$PP ssl;#" \
    -e "s#^\( *\)proxy_pass http://portcullis;#&\n\1proxy_bind 127.0.0.2;#" \
    deploy/nginx/portcullis.conf >"$WORK/portcullis.conf"
NGINX_VERSION="$(nginx -v 2>&1 | sed -n 's#.*nginx/\([0-9.]*\).*#\1#p')"
if [[ "$(printf '%s\n1.25.1\n' "$NGINX_VERSION" | sort -V | head -n1)" != "1.25.1" ]]; then
    sed -i -e "/^ *http2 on;/d" -e "s#listen 127.0.0.1:$PP ssl;#listen 127.0.0.1:$PP ssl http2;#" \
        "$WORK/portcullis.conf"
fi
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 256; }
http {
    access_log $WORK/nginx-access.log;
    client_body_temp_path $WORK/tmp/body;
    proxy_temp_path $WORK/tmp/proxy;
    fastcgi_temp_path $WORK/tmp/fastcgi;
    uwsgi_temp_path $WORK/tmp/uwsgi;
    scgi_temp_path $WORK/tmp/scgi;
    include $WORK/portcullis.conf;
}
EOF
nginx -t -q -p "$WORK" -c "$WORK/nginx.conf" || die "nginx refuses the configuration"

# Both instances share the database, Redis, master key and issuer; they trust the proxy only.
export PORTCULLIS_DATABASE_URL="$DB_URL"
export PORTCULLIS_MASTER_KEY
PORTCULLIS_MASTER_KEY="$(openssl rand -base64 32)"
export PORTCULLIS_ISSUER="$ISSUER"
export PORTCULLIS_TRUSTED_PROXIES=127.0.0.2/32
export PORTCULLIS_BCRYPT_COST=4
export PORTCULLIS_LOG="${PORTCULLIS_LOG:-warn}"
unset PORTCULLIS_TLS_CERT PORTCULLIS_TLS_KEY PORTCULLIS_CONFIG

wait_ready() { # wait_ready URL [curl options...]
    local url="$1"
    shift
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$@" "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    die "$url did not become ready"
}

for port in "$P1" "$P2"; do
    PORTCULLIS_LISTEN="127.0.0.1:$port" "$BIN" serve 2>>"$WORK/portcullis-$port.log" &
    PIDS+=("$!")
    wait_ready "http://127.0.0.1:$port/readyz"
done
log "instances on 127.0.0.1:$P1 and 127.0.0.1:$P2"
nginx -p "$WORK" -c "$WORK/nginx.conf"
log "proxy (nginx $NGINX_VERSION) on $ISSUER"

FAILED=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    if [[ "$2" == "$3" ]]; then
        log "ok   $1"
    else
        log "FAIL $1: expected '$2', got '$3'"
        FAILED=1
    fi
}
# Through the proxy, as a client at 127.0.0.3 that trusts only the proxy's certificate.
via_proxy() { # via_proxy PATH [curl options...]
    local path="$1"
    shift
    curl -sS --cacert "$CA" --interface 127.0.0.3 "$@" "$ISSUER$path"
}

wait_ready "$ISSUER/readyz" --cacert "$CA"
check "GET /readyz through the proxy" 200 \
    "$(via_proxy /readyz -o /dev/null -w '%{http_code}')"
check "discovery advertises the proxy's URL as issuer" "$ISSUER" \
    "$(via_proxy /.well-known/openid-configuration | jq -r .issuer)"
check "discovery's token endpoint is behind the proxy" "$ISSUER/oauth/token" \
    "$(via_proxy /.well-known/openid-configuration | jq -r .token_endpoint)"
JWKS="$(via_proxy /.well-known/jwks.json)"
check "JWKS through the proxy lists keys" true "$(jq '.keys | length > 0' <<<"$JWKS")"
check "both instances publish the same JWKS" \
    "$(curl -fsS "http://127.0.0.1:$P1/.well-known/jwks.json" | jq -cS .)" \
    "$(curl -fsS "http://127.0.0.1:$P2/.well-known/jwks.json" | jq -cS .)"
check "Strict-Transport-Security through the proxy" "max-age=31536000" \
    "$(via_proxy /healthz -o /dev/null -D - | tr -d '\r' |
        sed -n 's/^strict-transport-security: //Ip')"

# Balancing: request ids are "<per-instance prefix>-<counter>".
PREFIXES="$(for _ in $(seq 1 10); do
    via_proxy /healthz -o /dev/null -D - | tr -d '\r' | sed -n 's/^x-request-id: \([^-]*\)-.*/\1/Ip'
done | sort -u | wc -l)"
check "requests reach both instances (distinct request-id prefixes)" 2 "$PREFIXES"

# A client-credentials token through the proxy (one request per instance, round robin).
SECRET="$("$BIN" client create --client-id proxy-check --grant-types client_credentials \
    --scopes articles:read 2>>"$WORK/cli.log" | jq -r .client_secret)"
for i in 1 2; do
    TOKEN_JSON="$(via_proxy /oauth/token -u "proxy-check:$SECRET" -d grant_type=client_credentials)"
    TOKEN="$(jq -r .access_token <<<"$TOKEN_JSON")"
    check "client_credentials token through the proxy ($i)" Bearer \
        "$(jq -r .token_type <<<"$TOKEN_JSON")"
    PAYLOAD="$(cut -d. -f2 <<<"$TOKEN" | tr '_-' '/+')"
    while ((${#PAYLOAD} % 4)); do PAYLOAD="$PAYLOAD="; done
    check "its iss is the proxy's URL ($i)" "$ISSUER" "$(base64 -d <<<"$PAYLOAD" | jq -r .iss)"
    check "it introspects as active ($i)" true \
        "$(via_proxy /oauth/introspect -u "proxy-check:$SECRET" --data-urlencode "token=$TOKEN" |
            jq -r .active)"
done

# Forwarded headers: who is recorded as the client of a registration.
"$BIN" client create --client-id proxy-check-spa --public --grant-types password \
    --scopes audit:read >/dev/null 2>>"$WORK/cli.log"
printf 'proxy check admin password\n' | "$BIN" user create --username checkadmin \
    --email checkadmin@example.com --password-stdin --role admin >/dev/null 2>>"$WORK/cli.log"
ADMIN_TOKEN="$(via_proxy /oauth/token -d grant_type=password -d username=checkadmin \
    --data-urlencode 'password=proxy check admin password' -d client_id=proxy-check-spa \
    -d scope=audit:read | jq -r .access_token)"
register() { # register URL USERNAME [curl options...] -> user id
    local url="$1" name="$2"
    shift 2
    curl -sS "$@" -H 'content-type: application/json' \
        -d "{\"username\":\"$name\",\"email\":\"$name@example.com\",\"password\":\"correct horse battery\"}" \
        "$url/api/v1/users" | jq -r .id
}
recorded_ip() { # recorded_ip USER_ID
    via_proxy "/api/v1/admin/audit-events?type=user.registered&user_id=$1" \
        -H "authorization: Bearer $ADMIN_TOKEN" | jq -r '.items[0].ip'
}
ID="$(register "$ISSUER" viaproxy1 --cacert "$CA" --interface 127.0.0.3 \
    -H 'x-forwarded-for: 203.0.113.66')"
check "client of the proxy: its own address, not an invented X-Forwarded-For" 127.0.0.3 \
    "$(recorded_ip "$ID")"
ID="$(register "$ISSUER" viaproxy2 --cacert "$CA" --interface 127.0.0.3 \
    -H 'forwarded: for=203.0.113.67')"
check "client of the proxy: its own address, not an invented Forwarded" 127.0.0.3 \
    "$(recorded_ip "$ID")"
ID="$(register "http://127.0.0.1:$P1" direct1 --interface 127.0.0.1 \
    -H 'x-forwarded-for: 203.0.113.68')"
check "straight to an instance: X-Forwarded-For ignored (peer not trusted)" 127.0.0.1 \
    "$(recorded_ip "$ID")"
ID="$(register "http://127.0.0.1:$P2" direct2 --interface 127.0.0.1 \
    -H 'forwarded: for=203.0.113.69')"
check "straight to an instance: Forwarded ignored (peer not trusted)" 127.0.0.1 \
    "$(recorded_ip "$ID")"

if ((FAILED)); then
    for f in "$WORK"/*.log; do
        log "--- $(basename "$f")"
        tail -n 20 "$f" >&2
    done
    die "some checks failed"
fi
log "all checks passed"
