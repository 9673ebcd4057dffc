"""OpenRouter's official Python SDK (`openrouter` on PyPI), unchanged but for its server URL,
drives every endpoint llmux serves: chat (whole and streamed), models, endpoints,
generation, key."""
import pytest
from openrouter import OpenRouter, errors

MODEL = "deepseek/deepseek-v3.2"


@pytest.fixture
def client(gateway):
    return OpenRouter(api_key=gateway.key, server_url=gateway.api, timeout_ms=60_000)


def test_chat_send(client):
    r = client.chat.send(model=MODEL, messages=[{"role": "user", "content": "echo: hi openrouter"}])
    assert r.choices[0].message.content == "hi openrouter"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.cost > 0
    gen = client.generations.get_generation(id=r.id)
    assert gen.data.id == r.id
    assert gen.data.model == MODEL
    assert gen.data.tokens_completion == r.usage.completion_tokens
    assert gen.data.total_cost == pytest.approx(r.usage.cost)
    assert gen.data.streamed is False


def test_chat_stream(client):
    chunks = list(client.chat.send(
        model=MODEL, messages=[{"role": "user", "content": "echo: streaming works"}], stream=True,
    ))
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert text == "streaming works"
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].completion_tokens == 2
    assert all(c.error is None for c in chunks)


def test_models_and_endpoints(client):
    page = client.models.list()
    ids = [m.id for m in page.result.data]
    assert MODEL in ids
    assert page.result.total_count >= len(ids)
    m = next(m for m in page.result.data if m.id == MODEL)
    assert float(m.pricing.prompt) > 0
    everything = []
    res = page
    while res is not None:
        everything += [m.id for m in res.result.data]
        res = res.next()
    assert len(everything) == page.result.total_count
    author, slug = MODEL.split("/")
    eps = client.endpoints.list(author=author, slug=slug)
    assert eps.data.id == MODEL
    assert eps.data.endpoints[0].provider_name.startswith("Simulated")


def test_current_key(client):
    k = client.api_keys.get_current_key_metadata()
    assert k.data.label.startswith("sk-llmux-v1-")
    assert k.data.is_management_key is False
    assert k.data.usage >= 0


def test_errors(gateway, client):
    with pytest.raises(errors.BadRequestResponseError) as e:
        client.chat.send(model="nobody/nothing", messages=[{"role": "user", "content": "hi"}])
    assert e.value.data.error.code == 400
    bad = OpenRouter(api_key="sk-llmux-v1-wrong", server_url=gateway.api)
    with pytest.raises(errors.UnauthorizedResponseError):
        bad.chat.send(model=MODEL, messages=[{"role": "user", "content": "hi"}])
