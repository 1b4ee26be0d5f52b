"""Provider tests talk real HTTP to the fake provider server (tools/fake_provider.py).

The suite's one fake server (``fake``, shared with every other module), reset before every test;
settings point both providers at it with short timeouts; the chain's sleep is recorded instead
of slept, so retries cost no time.
"""

from __future__ import annotations

import pytest

from app.providers.chain import build_chain
from app.providers.events import Text
from app.providers.openai import OpenAIProvider
from app.providers.openrouter import OpenRouterProvider
from app.providers.transport import make_http_client
from app.providers.types import ChatRequest, ChatTurn, ProviderSettings
from tools.fake_provider import DEFAULT_OPENAI_KEY, DEFAULT_OPENROUTER_KEY


@pytest.fixture(scope="session")
def fake_provider(fake):
    """The suite's one fake provider server (``fake``, tests/conftest.py), by this folder's name."""
    return fake


@pytest.fixture(autouse=True)
def _fresh_fake(fake_provider):
    fake_provider.reset()


@pytest.fixture
def settings(fake_provider) -> ProviderSettings:
    return ProviderSettings(
        openai_api_key=DEFAULT_OPENAI_KEY,
        openai_base_url=fake_provider.openai_base_url,
        openrouter_api_key=DEFAULT_OPENROUTER_KEY,
        openrouter_base_url=fake_provider.openrouter_base_url,
        openrouter_referer="https://prompthub.example",
        openrouter_title="PromptHub",
        timeout_seconds=1.0,
        connect_timeout_seconds=1.0,
        retry_max_wait_seconds=0.2,
        offline_delay_ms=0,
    )


@pytest.fixture
def http_client(settings):
    client = make_http_client(settings)
    yield client
    client.close()


@pytest.fixture
def openai(settings, http_client) -> OpenAIProvider:
    return OpenAIProvider(settings, http_client)


@pytest.fixture
def openrouter(settings, http_client) -> OpenRouterProvider:
    return OpenRouterProvider(settings, http_client)


@pytest.fixture
def sleeps() -> list[float]:
    """What the chain would have slept, in order."""
    return []


@pytest.fixture
def chain(settings, http_client, sleeps):
    return build_chain(settings, http_client, sleep=sleeps.append)


def make_request(message: str = "What is 2+2?", **kw) -> ChatRequest:
    history = [ChatTurn("user", "Hi there"), ChatTurn("assistant", "Hello! How can I help?")]
    return ChatRequest(system="You are terse.", history=history, message=message, **kw)


@pytest.fixture
def chat_request() -> ChatRequest:
    return make_request()


def text_of(events) -> str:
    """The text of an adapter's stream events."""
    return "".join(e.text for e in events if isinstance(e, Text))
