-- wrk script: the authorization-code flow of signed-in browsers. Codes are single use and
-- live a minute, so they are made during the run, by the authorization endpoint (GET with
-- the session cookie; a first-party client, so no consent page: the answer is a 303 carrying
-- the code), and exchanged at the token endpoint (POST /oauth/token with the PKCE verifier).
-- The two kinds of answers are told apart by their status (303 and 200). done() prints the
-- exchanges per second; wrk's own requests/s counts every request sent.
-- Requires one wrk thread (-t1): the queue lives in that thread's Lua state.
--
-- Modes (BENCH_CODE_MODE):
--   pairs     (default) every request that finds no code waiting asks for one, every code
--             that comes back is exchanged: an exchange and its own authorization request
--   mint      authorization requests only; done() writes the codes to BENCH_CODE_FILE
--   exchange  exchanges only, of the codes in BENCH_CODE_FILE (made by a `mint` run less
--             than a minute before); a request that finds none left asks for a code instead
--             and is counted as `exhausted` (the figure then undercounts: make more codes)
--
-- Environment:
--   BENCH_COOKIES         the Cookie headers of signed-in browsers, one per line: authorization
--                         requests take them in turn, so that consecutive codes (and the
--                         sign-ins their exchanges record) belong to different users, as the
--                         concurrent sign-ins of a real deployment do
--   BENCH_AUTHORIZE_PATH  /oauth/authorize?... (response_type=code, PKCE S256 challenge)
--   BENCH_CODE_FORM       the token form without the code ("grant_type=...&code_verifier=...")
--   BENCH_CODE_MODE       pairs, mint or exchange (see above)
--   BENCH_CODE_FILE       the file of codes, one per line (mint and exchange)

local cookies = {}
for line in (os.getenv("BENCH_COOKIES") or ""):gmatch("[^\n]+") do
    table.insert(cookies, line)
end
local authorize = os.getenv("BENCH_AUTHORIZE_PATH")
local form = os.getenv("BENCH_CODE_FORM")
local mode = os.getenv("BENCH_CODE_MODE") or "pairs"
local file = os.getenv("BENCH_CODE_FILE")
assert(#cookies > 0, "BENCH_COOKIES is not set")
assert(authorize and authorize ~= "", "BENCH_AUTHORIZE_PATH is not set")
assert(form and form ~= "", "BENCH_CODE_FORM is not set")
assert(mode == "pairs" or mode == "mint" or mode == "exchange", "BENCH_CODE_MODE: pairs, mint or exchange")
assert(mode == "pairs" or (file and file ~= ""), "BENCH_CODE_FILE is not set")

-- Globals, so that done() can read them through thread:get().
queue = {}
head, tail = 1, 0
exchanges = 0
authorizations = 0
failures = 0
exhausted = 0

if mode == "exchange" then
    for line in io.lines(file) do
        if line ~= "" then
            tail = tail + 1
            queue[tail] = line
        end
    end
end

local browser = 0
local token_headers = {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Accept"] = "application/json",
}

request = function()
    if mode ~= "mint" and head <= tail then
        local code = queue[head]
        queue[head] = nil
        head = head + 1
        -- The code is taken from the Location header as sent: already URL-encoded.
        return wrk.format("POST", "/oauth/token", token_headers, form .. "&code=" .. code)
    end
    if mode == "exchange" then
        exhausted = exhausted + 1
    end
    browser = browser % #cookies + 1
    return wrk.format("GET", authorize, { ["Cookie"] = cookies[browser], ["Accept"] = "text/html" })
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
        local e = thread:get("exhausted") or 0
        if mode == "mint" then
            local codes = thread:get("queue") or {}
            local out = assert(io.open(file, "w"))
            for i = thread:get("head"), thread:get("tail") do
                if codes[i] then
                    out:write(codes[i], "\n")
                end
            end
            out:close()
            io.write(string.format("authorization requests per second: %.2f\n", a / seconds))
        else
            io.write(string.format("code exchanges per second: %.2f\n", x / seconds))
        end
        io.write(string.format("code flow (%s): %d exchanges, %d authorizations, %d failures, %d exhausted\n",
            mode, x, a, f, e))
    end
end
