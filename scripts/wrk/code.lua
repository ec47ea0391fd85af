-- wrk script: the authorization-code flow of a signed-in browser, measured at the token
-- endpoint. Codes are single use and live a minute, so they are made during the run: every
-- request that finds no code waiting asks the authorization endpoint for one (GET with the
-- session cookie; a first-party client, so no consent page: the answer is a 303 carrying the
-- code), and every code that comes back is exchanged (POST /oauth/token with the PKCE
-- verifier). The two kinds of answers are told apart by their status (303 and 200). done()
-- prints the exchanges per second; wrk's own requests/s counts both kinds.
-- Requires one wrk thread (-t1): the queue lives in that thread's Lua state.
--
-- Environment:
--   BENCH_COOKIE          the Cookie header of a signed-in browser
--   BENCH_AUTHORIZE_PATH  /oauth/authorize?... (response_type=code, PKCE S256 challenge)
--   BENCH_CODE_FORM       the token form without the code ("grant_type=...&code_verifier=...")

local cookie = os.getenv("BENCH_COOKIE")
local authorize = os.getenv("BENCH_AUTHORIZE_PATH")
local form = os.getenv("BENCH_CODE_FORM")
assert(cookie and cookie ~= "", "BENCH_COOKIE is not set")
assert(authorize and authorize ~= "", "BENCH_AUTHORIZE_PATH is not set")
assert(form and form ~= "", "BENCH_CODE_FORM is not set")

local queue = {}
local head, tail = 1, 0

-- Globals, so that done() can read them through thread:get().
exchanges = 0
authorizations = 0
failures = 0

local authorize_headers = { ["Cookie"] = cookie, ["Accept"] = "text/html" }
local token_headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Accept"] = "application/json",
}

request = function()
    if head <= tail then
        local code = queue[head]
        queue[head] = nil
        head = head + 1
        -- The code is taken from the Location header as sent: already URL-encoded.
        return wrk.format("POST", "/oauth/token", token_headers, form .. "&code=" .. code)
    end
    return wrk.format("GET", authorize, authorize_headers)
end

response = function(status, headers, body)
    if status == 303 then
        local location = headers["Location"] or headers["location"] or ""
        local code = location:match("[?&]code=([^&]+)")
        if code then
            authorizations = authorizations + 1
            tail = tail + 1
            queue[tail] = code
        else
            failures = failures + 1
        end
    elseif status == 200 then
        exchanges = exchanges + 1
    else
        failures = failures + 1
    end
end

local threads = {}

setup = function(thread)
    table.insert(threads, thread)
end

done = function(summary, latency, requests)
    local seconds = summary.duration / 1000000
    for _, thread in ipairs(threads) do
        local x = thread:get("exchanges") or 0
        local a = thread:get("authorizations") or 0
        local f = thread:get("failures") or 0
        io.write(string.format("code exchanges per second: %.2f\n", x / seconds))
        io.write(string.format("code flow: %d exchanges, %d authorizations, %d failures\n", x, a, f))
    end
end
