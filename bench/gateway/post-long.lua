-- wrk: as post.lua, with a long prompt (a 33 KB system message and a 4 KB user message, as a
-- coding agent sends): what llmux does per byte of a request (parsing, hashing, re-encoding).
local key = os.getenv("WRK_KEY") or "none"
local model = os.getenv("WRK_MODEL") or "openai/gpt-4o-mini"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
local system = string.rep("You are a careful coding agent. Follow the repository's conventions. ", 480)
local user = string.rep("Here is the file to change. ", 150)
wrk.body = '{"model":"' .. model .. '","max_tokens":64,"messages":[{"role":"system","content":"'
    .. system .. '"},{"role":"user","content":"' .. user .. '"}]}'

local non2xx = 0
response = function(status, headers, body)
    if status ~= 200 then non2xx = non2xx + 1 end
end
