-- wrk script: refresh_token grant with rotating refresh tokens.
--
-- Refresh tokens rotate on every use and presenting a rotated one revokes its whole
-- family, so a token can be sent exactly once. Instead of pre-minting one token per
-- request (tens of thousands of password grants, i.e. bcrypt, before the run), this keeps
-- a queue of live tokens: every request takes one token off the front, every successful
-- response puts the newly issued token on the back. Each connection thus walks a chain
-- of rotations, and the pool stays at its initial size minus the requests in flight.
-- wrk calls response() for a connection before it builds that connection's next request,
-- so with a pool larger than the connection count (bench.sh mints 2 x connections) the
-- queue never runs dry unless responses fail; each failure loses one token.
-- Requires one wrk thread (-t1): the queue lives in that thread's Lua state.
--
-- Environment:
--   BENCH_REFRESH_TOKENS  file with one refresh token per line (each one unused)
--   BENCH_BASIC_AUTH      the full Authorization header value ("Basic base64(id:secret)")
--   BENCH_SCOPE           optional scope to send with each refresh

local auth = os.getenv("BENCH_BASIC_AUTH")
local path = os.getenv("BENCH_REFRESH_TOKENS")
local scope = os.getenv("BENCH_SCOPE")
assert(auth and auth ~= "", "BENCH_BASIC_AUTH is not set")
assert(path and path ~= "", "BENCH_REFRESH_TOKENS is not set")

local function urlencode(s)
    return (s:gsub("[^%w%-%._~]", function(c)
        return string.format("%%%02X", string.byte(c))
    end))
end

local queue = {}
local head, tail = 1, 0
for line in io.lines(path) do
    if line ~= "" then
        tail = tail + 1
        queue[tail] = line
    end
end

local suffix = ""
if scope and scope ~= "" then
    suffix = "&scope=" .. urlencode(scope)
end

-- Globals, so that done() can read them through thread:get().
exhausted = 0
lost = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = auth
wrk.headers["Accept"] = "application/json"

request = function()
    local token
    if head <= tail then
        token = queue[head]
        queue[head] = nil
        head = head + 1
    else
        -- Pool ran dry: this request is doomed (invalid_grant) and shows up as non-2xx.
        exhausted = exhausted + 1
        token = "pool-exhausted"
    end
    return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. urlencode(token) .. suffix)
end

response = function(status, headers, body)
    local token = nil
    if status == 200 then
        token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    end
    if token then
        tail = tail + 1
        queue[tail] = token
    else
        lost = lost + 1
    end
end

local threads = {}

setup = function(thread)
    table.insert(threads, thread)
end

done = function(summary, latency, requests)
    for _, thread in ipairs(threads) do
        local e = thread:get("exhausted") or 0
        local l = thread:get("lost") or 0
        io.write(string.format("refresh pool: %d responses without a new token, %d requests sent with the pool empty\n", l, e))
    end
end
