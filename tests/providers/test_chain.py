"""The fallback policy (app/providers/chain.py, docs/providers.md), one test per table row, over
real HTTP to the fake server. ``sleeps`` records what the chain would have slept before a retry."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from app.providers.chain import (
    PROVIDERS,
    AttemptRecord,
    ProviderChain,
    build_chain,
)
from app.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderContentPolicy,
    ProviderError,
    ProviderMalformed,
    ProviderTimeout,
    ProviderUnavailable,
)
from app.providers.events import Committed, Done, Text
from app.providers.transport import make_http_client
from app.providers.types import ProviderSettings
from tests.providers.conftest import make_request
from tools.fake_provider import Scenario, closed_port_url

DEFAULT_RETRY = 0.25


def run(chain: ProviderChain, req=None) -> tuple[str, Done]:
    events = list(chain.stream(req or make_request()))
    end = events[-1]
    assert isinstance(end, Done)
    committed, *deltas = events[:-1]
    # Who answers is announced once, before the first text, and agrees with the end.
    assert committed == Committed(end.meta.provider, committed.model, end.fallback)
    assert all(isinstance(e, Text) for e in deltas)
    return "".join(e.text for e in deltas), end


# --- before the first token: fall back ----------------------------------------------------------

FALLS_BACK = [
    # (scenario scripted twice on OpenAI, OpenAI requests, sleeps before the retry)
    pytest.param(Scenario(status=500), 2, [DEFAULT_RETRY], id="500-one-retry-then-fallback"),
    pytest.param(Scenario(status=502), 2, [DEFAULT_RETRY], id="502-one-retry-then-fallback"),
    pytest.param(Scenario(status=503), 2, [DEFAULT_RETRY], id="503-one-retry-then-fallback"),
    pytest.param(Scenario(status=408), 2, [DEFAULT_RETRY], id="408-one-retry-then-fallback"),
    pytest.param(Scenario(status=409), 2, [DEFAULT_RETRY], id="409-one-retry-then-fallback"),
    pytest.param(
        Scenario(status=503, retry_after_ms=100), 2, [0.1], id="503-short-retry-after-honoured"
    ),
    pytest.param(
        Scenario(status=503, should_retry=False), 1, [], id="x-should-retry-false-no-retry"
    ),
    pytest.param(Scenario(status=429, retry_after="30"), 1, [], id="429-long-retry-after"),
    pytest.param(Scenario(status=429), 1, [], id="429-without-retry-after"),
    pytest.param(
        Scenario(status=429, error="insufficient_quota", retry_after_ms=10),
        1,
        [],
        id="429-quota-never-retried",
    ),
    pytest.param(
        Scenario(inband_error=True, error="insufficient_quota"), 1, [], id="inband-quota-nested"
    ),
    pytest.param(
        Scenario(inband_error=True, error="rate_limit_exceeded", flat_error=True),
        1,
        [],
        id="inband-rate-limit-flat",
    ),
    pytest.param(
        Scenario(inband_error=True, error="server_error"),
        2,
        [DEFAULT_RETRY],
        id="inband-server-error-one-retry",
    ),
    pytest.param(
        Scenario(deltas=[], terminal="failed"),
        2,
        [DEFAULT_RETRY],
        id="response-failed-one-retry",
    ),
    pytest.param(Scenario(truncate_after=0), 1, [], id="eof-without-terminal-event"),
    pytest.param(Scenario(cut_after=0), 2, [DEFAULT_RETRY], id="connection-cut-before-text"),
    pytest.param(Scenario(malformed=True), 1, [], id="malformed-event"),
    pytest.param(Scenario(status=401), 1, [], id="401-auth"),
    pytest.param(Scenario(status=403), 1, [], id="403-forbidden"),
    pytest.param(Scenario(status=404), 1, [], id="404-model-not-found"),
]


@pytest.mark.parametrize(("scenario", "openai_calls", "expected_sleeps"), FALLS_BACK)
def test_failure_before_the_first_token_falls_back(
    fake_provider, chain, sleeps, scenario, openai_calls, expected_sleeps
):
    fake_provider.script("responses", scenario, scenario)
    text, end = run(chain)
    assert text == "Hello from the fake model."
    assert (end.meta.provider, end.fallback) == ("openrouter", True)
    assert len(fake_provider.calls("responses")) == openai_calls
    assert len(fake_provider.calls("chat")) == 1
    assert sleeps == expected_sleeps
    assert [a.provider for a in end.attempts] == ["openai"] * openai_calls
    assert end.attempts[-1].action == "fallback"
    # The fallback saw exactly the conversation the primary saw.
    messages = fake_provider.calls("chat")[0].json["messages"]
    primary = fake_provider.calls("responses")[0].json
    assert messages[0] == {"role": "system", "content": primary["instructions"]}
    assert messages[1:] == primary["input"]


def test_connection_refused_retries_once_then_falls_back(settings, http_client, sleeps):
    down = dataclasses.replace(settings, openai_base_url=closed_port_url() + "/v1")
    text, end = run(build_chain(down, http_client, sleep=sleeps.append))
    assert (end.meta.provider, end.fallback) == ("openrouter", True)
    assert [a.error for a in end.attempts] == ["ProviderConnectionError"] * 2
    assert sleeps == [DEFAULT_RETRY]


def test_read_timeout_falls_back_without_retry(fake_provider, settings, sleeps):
    short = dataclasses.replace(settings, timeout_seconds=0.3)
    fake_provider.script("responses", Scenario(hang_s=1), Scenario(hang_s=1))
    with make_http_client(short) as client:
        text, end = run(build_chain(short, client, sleep=sleeps.append))
    assert (end.meta.provider, end.fallback) == ("openrouter", True)
    assert len(fake_provider.calls("responses")) == 1
    assert [a.kind for a in end.attempts] == ["timeout"]
    assert sleeps == []


def test_short_rate_limit_is_retried_on_the_primary(fake_provider, chain, sleeps):
    fake_provider.script("responses", Scenario(status=429, retry_after_ms=50))
    text, end = run(chain)
    assert (end.meta.provider, end.fallback) == ("openai", False)
    assert len(fake_provider.calls("responses")) == 2
    assert fake_provider.calls("chat") == []
    assert sleeps == [0.05]
    assert [a.action for a in end.attempts] == ["retry"]


def test_long_rate_limit_falls_back_at_once(fake_provider, chain, sleeps):
    fake_provider.script("responses", Scenario(status=429, retry_after_ms=5000))
    _, end = run(chain)
    assert end.meta.provider == "openrouter"
    assert len(fake_provider.calls("responses")) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [401, 404])
def test_config_errors_fall_back_and_log_at_error_level(fake_provider, chain, caplog, status):
    fake_provider.script("responses", Scenario(status=status))
    with caplog.at_level(logging.INFO, logger="app.providers.chain"):
        _, end = run(chain, make_request("my secret question"))
    assert end.meta.provider == "openrouter"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "openai" in errors[0].getMessage()
    assert "test-openai-key" not in caplog.text  # no secrets
    assert "my secret question" not in caplog.text  # no message bodies


def test_quota_is_logged_at_error_level(fake_provider, chain, caplog):
    fake_provider.script("responses", Scenario(status=429, error="insufficient_quota"))
    with caplog.at_level(logging.INFO, logger="app.providers.chain"):
        run(chain)
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


def test_transient_failures_log_warnings(fake_provider, chain, caplog):
    fake_provider.script("responses", Scenario(status=500), Scenario(status=500))
    with caplog.at_level(logging.INFO, logger="app.providers.chain"):
        run(chain)
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "-> retry" in caplog.records[0].getMessage()
    assert "-> fallback" in caplog.records[1].getMessage()


# --- before the first token: never fall back ----------------------------------------------------

NO_FALLBACK = [
    pytest.param(Scenario(status=400), ProviderBadRequest, id="400-bad-request"),
    pytest.param(Scenario(status=413), ProviderBadRequest, id="413-too-large"),
    pytest.param(Scenario(status=422), ProviderBadRequest, id="422-unprocessable"),
    pytest.param(
        Scenario(status=400, error="context_length_exceeded"),
        ProviderBadRequest,
        id="context-length",
    ),
    pytest.param(
        Scenario(status=400, error="content_policy_violation"),
        ProviderContentPolicy,
        id="content-policy",
    ),
    pytest.param(Scenario(refusal="No."), ProviderContentPolicy, id="refusal"),
]


@pytest.mark.parametrize(("scenario", "error"), NO_FALLBACK)
def test_bad_requests_and_policy_never_fall_back(fake_provider, chain, sleeps, scenario, error):
    fake_provider.script("responses", scenario)
    with pytest.raises(error) as info:
        run(chain)
    assert info.value.partial is False
    assert fake_provider.calls("chat") == []
    assert len(fake_provider.calls("responses")) == 1
    assert sleeps == []
    assert [a.action for a in info.value.attempts] == ["raise"]


def test_openrouter_moderation_is_not_evaded(fake_provider, settings, http_client):
    only_openrouter = dataclasses.replace(settings, openai_api_key=None)
    fake_provider.script("chat", Scenario(status=403, moderation=True))
    with pytest.raises(ProviderContentPolicy, match="flagged"):
        run(build_chain(only_openrouter, http_client))
    assert len(fake_provider.calls("chat")) == 1


# --- after the first token: no fallback, no replay ----------------------------------------------

PARTIAL = [
    pytest.param("responses", Scenario(fail_after=2), ProviderUnavailable, id="openai-inband"),
    pytest.param(
        "responses",
        Scenario(fail_after=2, error="rate_limit_exceeded", flat_error=True),
        ProviderError,
        id="openai-inband-flat",
    ),
    pytest.param("responses", Scenario(cut_after=2), ProviderConnectionError, id="openai-cut"),
    pytest.param("responses", Scenario(truncate_after=2), ProviderMalformed, id="openai-eof"),
    pytest.param(
        "responses",
        Scenario(deltas=["Hello", " from"], terminal="failed"),
        ProviderUnavailable,
        id="openai-response-failed",
    ),  # fmt: skip
    pytest.param("chat", Scenario(fail_after=2), ProviderUnavailable, id="openrouter-int-code"),
    pytest.param(
        "chat", Scenario(fail_after=2, int_code=False), ProviderUnavailable, id="openrouter-str"
    ),
    pytest.param("chat", Scenario(truncate_after=2), ProviderMalformed, id="openrouter-eof"),
]


@pytest.mark.parametrize(("endpoint", "scenario", "error"), PARTIAL)
def test_failure_after_text_raises_partial_without_fallback(
    fake_provider, settings, http_client, sleeps, endpoint, scenario, error
):
    if endpoint == "chat":  # OpenRouter as the only provider
        settings = dataclasses.replace(settings, openai_api_key=None)
    chain = build_chain(settings, http_client, sleep=sleeps.append)
    fake_provider.script(endpoint, scenario, scenario)
    received = []
    with pytest.raises(error) as info:
        for event in chain.stream(make_request()):
            received.append(event)
    committed, *deltas = received
    expected = "openai" if endpoint == "responses" else "openrouter"
    assert (committed.provider, committed.fallback) == (expected, False)
    assert "".join(e.text for e in deltas) == "Hello from"
    assert info.value.partial is True
    assert len(fake_provider.calls(endpoint)) == 1  # no retry, no replay
    other = "chat" if endpoint == "responses" else "responses"
    assert fake_provider.calls(other) == []
    assert sleeps == []
    assert info.value.attempts[-1].action == "partial"


def test_empty_deltas_are_not_a_commit_point(fake_provider, chain):
    fake_provider.script("responses", Scenario(deltas=["", ""], terminal="failed"))
    fake_provider.script("responses", Scenario(status=500))
    _, end = run(chain)
    assert end.meta.provider == "openrouter"


def test_partial_error_keeps_the_provider_reason(fake_provider, settings, http_client):
    chain = build_chain(dataclasses.replace(settings, openai_api_key=None), http_client)
    fake_provider.script("chat", Scenario(fail_after=1, raw="upstream overloaded"))
    with pytest.raises(ProviderError) as info:
        list(chain.stream(make_request()))
    assert "upstream overloaded" in info.value.message


# --- everything down ----------------------------------------------------------------------------


def test_all_providers_down_raises_the_last_error_with_every_attempt(fake_provider, chain, sleeps):
    fake_provider.script("responses", Scenario(status=503), Scenario(status=503))
    down = Scenario(status=502, raw="no healthy upstream")
    fake_provider.script("chat", down, down)
    with pytest.raises(ProviderUnavailable) as info:
        run(chain)
    exc = info.value
    assert exc.provider == "openrouter" and "no healthy upstream" in exc.message
    assert exc.partial is False
    assert [(a.provider, a.action) for a in exc.attempts] == [
        ("openai", "retry"),
        ("openai", "fallback"),
        ("openrouter", "retry"),
        ("openrouter", "give_up"),
    ]
    assert all(isinstance(a, AttemptRecord) for a in exc.attempts)
    assert sleeps == [DEFAULT_RETRY, DEFAULT_RETRY]


def test_auth_failure_on_both_raises_the_last_auth_error(fake_provider, chain):
    fake_provider.script("responses", Scenario(status=401))
    fake_provider.script("chat", Scenario(status=401))
    with pytest.raises(ProviderAuthError) as info:
        run(chain)
    assert info.value.provider == "openrouter"
    assert info.value.message == "User not found."


# --- non-streaming: everything is before the commit point ---------------------------------------


@pytest.mark.parametrize(
    ("scenario", "openai_calls"),
    [
        pytest.param(Scenario(status=500), 2, id="500"),
        pytest.param(Scenario(status=429, error="insufficient_quota"), 1, id="quota"),
        pytest.param(Scenario(body_error=True, error="insufficient_quota"), 1, id="failed-body"),
        pytest.param(Scenario(status=401), 1, id="auth"),
    ],
)
def test_complete_falls_back_by_the_same_rules(fake_provider, chain, scenario, openai_calls):
    fake_provider.script("responses", scenario, scenario)
    reply, end = chain.complete(make_request())
    assert reply.text == "Hello from the fake model."
    assert (reply.meta.provider, end.fallback, end.meta) == ("openrouter", True, reply.meta)
    assert len(fake_provider.calls("responses")) == openai_calls


def test_complete_on_the_primary_is_not_a_fallback(fake_provider, chain):
    reply, end = chain.complete(make_request())
    assert (reply.meta.provider, end.fallback, end.attempts) == ("openai", False, ())
    assert fake_provider.calls("chat") == []


def test_complete_never_falls_back_on_bad_requests(fake_provider, chain):
    fake_provider.script("responses", Scenario(status=400))
    with pytest.raises(ProviderBadRequest):
        chain.complete(make_request())
    assert fake_provider.calls("chat") == []


def test_complete_timeout_falls_back(fake_provider, settings):
    short = dataclasses.replace(settings, timeout_seconds=0.3)
    fake_provider.script("responses", Scenario(hang_s=1))
    with make_http_client(short) as client:
        reply, end = build_chain(short, client, sleep=lambda _: None).complete(make_request())
    assert end.fallback and end.attempts[0].error == ProviderTimeout.__name__


# --- Stop ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["responses", "chat"])
def test_closing_the_chain_stream_closes_the_upstream_request(
    fake_provider, settings, http_client, endpoint
):
    if endpoint == "chat":
        settings = dataclasses.replace(settings, openai_api_key=None)
    chain = build_chain(settings, http_client)
    fake_provider.script(
        endpoint, Scenario(deltas=[f"w{i} " for i in range(200)], token_delay_ms=10)
    )
    events = chain.stream(make_request())
    assert next(events).provider == ("openai" if endpoint == "responses" else "openrouter")
    assert next(events) == Text("w0 ")
    events.close()  # Stop / client gone
    assert fake_provider.wait_for_disconnects(1, timeout=3)
    (call,) = fake_provider.calls(endpoint)
    assert call.disconnected and not call.completed


# --- registry -----------------------------------------------------------------------------------


def test_registry_order_and_keys(settings, http_client):
    assert list(PROVIDERS) == ["openai", "openrouter"]
    chain = build_chain(settings, http_client)
    assert chain.providers == ["openai", "openrouter"] and not chain.is_offline


@pytest.mark.parametrize(
    ("openai_key", "openrouter_key", "expected"),
    [
        ("k", None, ["openai"]),
        (None, "k", ["openrouter"]),
        ("", "", ["offline"]),
        (None, None, ["offline"]),
    ],
)
def test_providers_without_a_key_are_skipped(http_client, openai_key, openrouter_key, expected):
    settings = ProviderSettings(openai_api_key=openai_key, openrouter_api_key=openrouter_key)
    chain = build_chain(settings, http_client)
    assert chain.providers == expected
    assert chain.is_offline is (expected == ["offline"])


def test_openrouter_alone_is_not_a_fallback(fake_provider, settings, http_client):
    chain = build_chain(dataclasses.replace(settings, openai_api_key=None), http_client)
    _, end = run(chain)
    assert (end.meta.provider, end.fallback) == ("openrouter", False)
    assert fake_provider.calls("responses") == []


def test_no_keys_streams_the_offline_model_without_network(fake_provider, http_client):
    chain = build_chain(ProviderSettings(offline_delay_ms=0), http_client)
    text, end = run(chain, make_request("Tell me a joke"))
    assert (end.meta.provider, end.meta.model, end.fallback) == ("offline", "offline-demo", False)
    assert "OPENAI_API_KEY" in text and "Tell me a joke" in text
    assert fake_provider.requests == []


def test_settings_repr_hides_keys():
    settings = ProviderSettings(openai_api_key="sk-very-secret", openrouter_api_key="sk-or-x")
    assert "sk-very-secret" not in repr(settings) and "sk-or-x" not in repr(settings)


def test_a_model_only_openrouter_offers_goes_straight_to_openrouter(fake_provider, chain):
    req = make_request(models={"openai": None, "openrouter": "anthropic/claude-3.5-haiku"})
    _, end = run(chain, req)
    assert (end.meta.provider, end.fallback) == ("openrouter", False)
    assert fake_provider.calls("responses") == []
    assert fake_provider.calls("chat")[0].json["model"] == "anthropic/claude-3.5-haiku"
    _, end = chain.complete(req)
    assert end.meta.provider == "openrouter"
    assert fake_provider.calls("responses") == []


def test_a_model_no_configured_provider_offers_is_a_clear_error(
    fake_provider, settings, http_client
):
    chain = build_chain(dataclasses.replace(settings, openrouter_api_key=None), http_client)
    req = make_request(models={"openai": None, "openrouter": "anthropic/claude-3.5-haiku"})
    with pytest.raises(ProviderError, match="no configured provider offers this model"):
        list(chain.stream(req))
    assert fake_provider.calls("responses") == [] and fake_provider.calls("chat") == []


def test_each_provider_gets_its_own_id_for_the_model(fake_provider, chain):
    fake_provider.script("responses", Scenario(status=500), Scenario(status=500))
    req = make_request(models={"openai": "gpt-4.1-mini", "openrouter": "openai/gpt-4.1-mini"})
    _, end = run(chain, req)
    assert end.fallback is True
    assert {c.json["model"] for c in fake_provider.calls("responses")} == {"gpt-4.1-mini"}
    assert fake_provider.calls("chat")[0].json["model"] == "openai/gpt-4.1-mini"
