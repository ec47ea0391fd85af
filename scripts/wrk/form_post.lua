-- wrk script: POST one fixed application/x-www-form-urlencoded body with HTTP Basic
-- client authentication. Used for the client_credentials, introspection and password
-- benchmarks (scripts/bench.sh).
--
-- Environment:
--   BENCH_BODY        the form body, already URL-encoded (e.g. grant_type=client_credentials)
--   BENCH_BASIC_AUTH  the full Authorization header value ("Basic base64(id:secret)")

local body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_BASIC_AUTH")
assert(body and body ~= "", "BENCH_BODY is not set")
assert(auth and auth ~= "", "BENCH_BASIC_AUTH is not set")

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = auth
wrk.headers["Accept"] = "application/json"
