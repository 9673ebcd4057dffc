"""Every client against every upstream protocol, streaming and not: the official openai,
anthropic and openrouter SDKs call a model whose (simulated) upstream speaks OpenAI's, Anthropic's
or Gemini's protocol. The demo routes Claude models to its Anthropic-protocol simulator,
Google's to its Gemini-protocol one, and the rest to its OpenAI-protocol one."""
import json

import anthropic
import pytest
from openai import OpenAI
from openrouter import OpenRouter

UPSTREAMS = {
    "openai-protocol": "deepseek/deepseek-v3.2",
    "anthropic-protocol": "anthropic/claude-sonnet-4.5",
    "gemini-protocol": "google/gemini-2.5-flash",
}
PROVIDER = {
    "openai-protocol": "Simulated (OpenAI protocol)",
    "anthropic-protocol": "Simulated (Anthropic protocol)",
    "gemini-protocol": "Simulated (Gemini protocol)",
}
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PROMPT = "echo: the quick brown fox"


@pytest.fixture
def openai_client(gateway):
    return OpenAI(base_url=f"{gateway.base}/v1", api_key=gateway.key, max_retries=0)


@pytest.fixture
def anthropic_client(gateway):
    return anthropic.Anthropic(base_url=f"{gateway.base}/api", api_key=gateway.key, max_retries=0)


@pytest.fixture
def openrouter_client(gateway):
    return OpenRouter(api_key=gateway.key, server_url=gateway.api, timeout_ms=60_000)


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk(openai_client, upstream, stream):
    model = UPSTREAMS[upstream]
    if stream:
        chunks = list(openai_client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage.completion_tokens == 4
        assert chunks[0].model_extra["provider"] == PROVIDER[upstream]
    else:
        r = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
        text = r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop"
        assert r.usage.completion_tokens == 4
        assert r.model_extra["provider"] == PROVIDER[upstream]
    assert text == "the quick brown fox"


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk(anthropic_client, upstream, stream):
    model = UPSTREAMS[upstream]
    if stream:
        with anthropic_client.messages.stream(model=model, max_tokens=200,
                                              messages=[{"role": "user", "content": PROMPT}]) as s:
            text = "".join(s.text_stream)
            m = s.get_final_message()
    else:
        m = anthropic_client.messages.create(model=model, max_tokens=200, messages=[{"role": "user", "content": PROMPT}])
        text = m.content[0].text
    assert text == "the quick brown fox"
    assert m.stop_reason == "end_turn"
    assert m.usage.output_tokens == 4
    assert m.model == model


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True])
def test_openrouter_sdk(openrouter_client, upstream, stream):
    model = UPSTREAMS[upstream]
    if stream:
        chunks = list(openrouter_client.chat.send(model=model, messages=[{"role": "user", "content": PROMPT}], stream=True))
        text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    else:
        r = openrouter_client.chat.send(model=model, messages=[{"role": "user", "content": PROMPT}])
        text = r.choices[0].message.content
    assert text == "the quick brown fox"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_anthropic_sdk_tool_use_round_trip(anthropic_client, upstream):
    model = UPSTREAMS[upstream]
    tools = [{"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}]
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    m = anthropic_client.messages.create(model=model, max_tokens=300, tools=tools, messages=messages)
    assert m.stop_reason == "tool_use"
    use = next(b for b in m.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "sim"}
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
    m2 = anthropic_client.messages.create(model=model, max_tokens=300, tools=tools, messages=messages)
    assert m2.content[0].text == "The tool returned: sunny"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_anthropic_sdk_thinking_stream_then_tools(anthropic_client, upstream):
    """Thinking streams, and a tool-use turn with thinking on comes back accepted: the
    Anthropic simulator refuses an unsigned thinking block, the Gemini one a function call
    without its thought signature."""
    model = UPSTREAMS[upstream]
    tools = [{"name": WEATHER["name"], "description": WEATHER["description"], "input_schema": WEATHER["parameters"]}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    with anthropic_client.messages.stream(model=model, max_tokens=2048, thinking=thinking, tools=tools,
                                          messages=messages) as s:
        kinds = [e.type for e in s]
        m = s.get_final_message()
    assert "thinking" in kinds
    assert m.content[0].type in ("thinking", "redacted_thinking") or any(b.type == "thinking" for b in m.content)
    thought = next(b for b in m.content if b.type == "thinking")
    assert thought.thinking.startswith("Let me think")
    use = next(b for b in m.content if b.type == "tool_use")
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
    m2 = anthropic_client.messages.create(model=model, max_tokens=2048, thinking=thinking, tools=tools, messages=messages)
    assert any(b.type == "text" and b.text == "The tool returned: sunny" for b in m2.content)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_openai_sdk_tool_use_and_thinking_round_trip(openai_client, upstream):
    model = UPSTREAMS[upstream]
    tools = [{"type": "function", "function": WEATHER}]
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    extra = {"reasoning": {"max_tokens": 1024}}
    chunks = list(openai_client.chat.completions.create(model=model, messages=messages, tools=tools, stream=True,
                                                        extra_body=extra))
    reasoning = "".join(c.choices[0].delta.model_extra.get("reasoning") or "" for c in chunks if c.choices)
    assert reasoning.startswith("Let me think")
    r = openai_client.chat.completions.create(model=model, messages=messages, tools=tools, extra_body=extra)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    call = msg.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "sim"}
    messages += [msg.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    r2 = openai_client.chat.completions.create(model=model, messages=messages, tools=tools, extra_body=extra)
    assert r2.choices[0].message.content == "The tool returned: sunny"


def test_count_tokens_and_embeddings(gateway, anthropic_client, openai_client, openrouter_client):
    n = anthropic_client.messages.count_tokens(model="anthropic/claude-sonnet-4.5",
                                               messages=[{"role": "user", "content": "Hello there"}])
    assert n.input_tokens > 2
    e = openai_client.embeddings.create(model="openai/text-embedding-3-small", input=["one two", "three"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 8
    assert e.usage.prompt_tokens == 3
    e2 = openrouter_client.embeddings.generate(model="openai/text-embedding-3-small", input="hello world")
    assert e2.data[0].embedding
    models = openrouter_client.embeddings.list_models()
    assert "openai/text-embedding-3-small" in [m.id for m in models.result.data]
