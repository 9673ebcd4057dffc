"""OpenRouter's SDK against llmux's account API: keys (list, create, get, update, delete),
credits, activity and providers, with a management key made by `llmux keys create --management`."""
import json

import pytest
from openrouter import OpenRouter, errors


@pytest.fixture(scope="module")
def management(gateway):
    out = gateway.cli("keys", "create", "--name", "py-admin", "--management", "--credits", "3", "--json")
    return json.loads(out.stdout)


@pytest.fixture
def admin(gateway, management):
    return OpenRouter(api_key=management["key"], server_url=gateway.api, timeout_ms=30_000)


def test_key_lifecycle(gateway, admin):
    created = admin.api_keys.create(name="py-worker", limit=1.5, limit_reset="monthly")
    assert created.key.startswith("sk-llmux-v1-")
    assert created.data.name == "py-worker" and created.data.limit == 1.5
    h = created.data.hash
    worker = OpenRouter(api_key=created.key, server_url=gateway.api, timeout_ms=30_000)
    r = worker.chat.send(model="deepseek/deepseek-v3.2", messages=[{"role": "user", "content": "echo: billed"}])
    assert r.usage.cost > 0
    got = admin.api_keys.get(hash=h)
    assert got.data.usage == pytest.approx(r.usage.cost)
    assert got.data.limit_remaining == pytest.approx(1.5 - r.usage.cost)
    assert h in [k.hash for k in admin.api_keys.list().data]
    updated = admin.api_keys.update(hash=h, disabled=True, name="py-paused")
    assert updated.data.disabled is True and updated.data.name == "py-paused"
    with pytest.raises(errors.UnauthorizedResponseError):
        worker.chat.send(model="deepseek/deepseek-v3.2", messages=[{"role": "user", "content": "hi"}])
    assert admin.api_keys.delete(hash=h).DELETED is True
    with pytest.raises(errors.NotFoundResponseError):
        admin.api_keys.get(hash=h)


def test_credits_activity_providers(admin):
    c = admin.credits.get_credits()
    assert c.data.total_credits == 3.0
    a = admin.analytics.get_user_activity(request={})
    assert a.data == []
    names = [p.slug for p in admin.providers.list().data]
    assert "sim-openai" in names


def test_inference_keys_cannot_manage(gateway):
    inference = OpenRouter(api_key=gateway.key, server_url=gateway.api)
    with pytest.raises(errors.OpenRouterError) as e:
        inference.api_keys.list()
    assert e.value.status_code == 403
