-- wrk: POST a chat completion with a key (WRK_KEY) for a model (WRK_MODEL), streamed when
-- WRK_STREAM=1.
local key = os.getenv("WRK_KEY") or "none"
local model = os.getenv("WRK_MODEL") or "openai/gpt-4o-mini"
local stream = os.getenv("WRK_STREAM") == "1" and '"stream":true,' or ""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '",' .. stream .. '"max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}]}'

local non2xx = 0
response = function(status, headers, body)
    if status ~= 200 then non2xx = non2xx + 1 end
end
