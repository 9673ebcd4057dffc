-- wrk: an Anthropic Messages request as a coding agent built on the Anthropic SDK sends it (a
-- 33 KB system prompt in a cached block, a tool, a tool call and its 8 KB result, a 4 KB user
-- message), to /api/v1/messages whatever the URL given: what llmux does per byte of such a
-- request on its way to an OpenAI-compatible upstream.
local key = os.getenv("WRK_KEY") or "none"
local model = os.getenv("WRK_MODEL") or "openai/gpt-4o-mini"
wrk.method = "POST"
wrk.path = "/api/v1/messages"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = key
wrk.headers["anthropic-version"] = "2023-06-01"
local system = string.rep("You are a careful coding agent. Follow the repository's conventions. ", 480)
local file = string.rep("fn main() { println!(\\\"hello\\\"); } ", 240)
local user = string.rep("Here is the file to change. ", 150)
wrk.body = '{"model":"' .. model .. '","max_tokens":64,'
    .. '"system":[{"type":"text","text":"' .. system .. '","cache_control":{"type":"ephemeral"}}],'
    .. '"tools":[{"name":"read_file","description":"Read a file of the repository.",'
    .. '"input_schema":{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}}],'
    .. '"messages":[{"role":"user","content":"Open src/main.rs."},'
    .. '{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"read_file","input":{"path":"src/main.rs"}}]},'
    .. '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"' .. file .. '"},'
    .. '{"type":"text","text":"' .. user .. '"}]}]}'

local non2xx = 0
response = function(status, headers, body)
    if status ~= 200 then non2xx = non2xx + 1 end
end
