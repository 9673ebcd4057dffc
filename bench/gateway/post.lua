-- wrk: POST a chat completion with a key (WRK_KEY) for a model (WRK_MODEL).
local key = os.getenv("WRK_KEY") or "none"
local model = os.getenv("WRK_MODEL") or "openai/gpt-4o-mini"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}]}'

local non2xx = 0
response = function(status, headers, body)
    if status ~= 200 then non2xx = non2xx + 1 end
end
