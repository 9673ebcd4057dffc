"""The official `openai` package, pointed at llmux (`base_url=.../v1`), against the demo."""
import json
import subprocess

import openai
import pytest
from openai import OpenAI

MODEL = "deepseek/deepseek-v3.2"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def client(gateway):
    return OpenAI(base_url=f"{gateway.base}/v1", api_key=gateway.key, max_retries=0)


def test_curl_gets_a_completion(gateway):
    out = subprocess.run(
        ["curl", "-sS", "-f", f"{gateway.api}/chat/completions",
         "-H", f"Authorization: Bearer {gateway.key}", "-H", "Content-Type: application/json",
         "-d", json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]})],
        capture_output=True, text=True, check=True,
    )
    body = json.loads(out.stdout)
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["cost"] > 0


def test_completion(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "echo: hello from python"}])
    assert r.id.startswith("gen-")
    assert r.model == MODEL
    assert r.choices[0].message.content == "hello from python"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 3
    assert r.usage.model_extra["cost"] > 0
    assert r.model_extra["provider"].startswith("Simulated")


def test_stream_text_then_usage(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "echo: one two three four five"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.model_extra["cost"] > 0
    # every content chunk came before the usage chunk
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_streamed_tool_call(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls = {}
    finish = None
    for c in stream:
        if not c.choices:
            continue
        for tc in c.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        finish = c.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "sim"}


def test_non_streamed_tool_call_round_trip(client):
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    messages += [r.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    r2 = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    assert r2.choices[0].message.content == "The tool returned: sunny, 21C"


def test_errors_raise_the_sdk_exceptions(gateway, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="nobody/nothing", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 400
    bad = OpenAI(base_url=f"{gateway.base}/v1", api_key="sk-llmux-v1-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
