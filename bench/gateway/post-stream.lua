-- wrk: as post.lua, streamed (`"stream": true`): the answer comes as server-sent events.
local key = os.getenv("WRK_KEY") or "none"
local model = os.getenv("WRK_MODEL") or "deepseek/deepseek-v3.2"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","stream":true,"max_tokens":64,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}]}'
