"""The OpenAI Responses adapter against the fake server: what we send, what we parse, and how
every failure maps onto our error family."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from app.providers.errors import (
    ProviderAuthError,
    ProviderBadRequest,
    ProviderConnectionError,
    ProviderContentPolicy,
    ProviderMalformed,
    ProviderModelNotFound,
    ProviderQuotaExceeded,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from app.providers.events import Done, Text
from app.providers.openai import OpenAIProvider
from app.providers.transport import make_http_client
from app.providers.types import ChatRequest, ChatTurn
from tests.providers.conftest import make_request, text_of
from tools.fake_provider import Scenario, closed_port_url

# --- what crosses the wire ----------------------------------------------------------------------


def test_stream_request_body_and_headers(fake_provider, openai, chat_request):
    list(openai.stream(chat_request))
    (call,) = fake_provider.calls("responses")
    assert call.headers["Authorization"] == "Bearer test-openai-key"
    assert call.headers["Accept"] == "text/event-stream"
    assert call.json == {
        "model": "gpt-4o-mini",
        "instructions": "You are terse.",
        "input": [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What is 2+2?"},
        ],
        "max_output_tokens": 1024,
        "store": False,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    }


def test_non_stream_body_has_no_stream_options(fake_provider, openai, chat_request):
    openai.complete(chat_request)
    body = fake_provider.calls("responses")[0].json
    assert body["stream"] is False
    assert "stream_options" not in body
    assert "temperature" not in body


def test_temperature_model_override_store_and_token_floor(fake_provider, settings, http_client):
    adapter = OpenAIProvider(dataclasses.replace(settings, openai_store=True), http_client)
    models = {"openai": "gpt-4o", "openrouter": "openai/gpt-4o"}
    adapter.complete(make_request(models=models, temperature=0.2, max_output_tokens=5))
    body = fake_provider.calls("responses")[0].json
    assert body["model"] == "gpt-4o"  # the request's OpenAI id, not the configured default
    assert body["temperature"] == 0.2
    assert body["store"] is True
    assert body["max_output_tokens"] == 16  # the API's minimum


def test_settings_cap_the_output_tokens(fake_provider, settings, http_client):
    adapter = OpenAIProvider(dataclasses.replace(settings, max_output_tokens=256), http_client)
    adapter.complete(make_request(max_output_tokens=4096))
    assert fake_provider.calls("responses")[0].json["max_output_tokens"] == 256


# --- successful replies -------------------------------------------------------------------------


def test_stream_yields_deltas_then_one_end_with_usage(openai, chat_request):
    events = list(openai.stream(chat_request))
    assert [e.text for e in events[:-1]] == ["Hello", " from", " the", " fake", " model."]
    end = events[-1]
    assert isinstance(end, Done)
    meta = end.meta
    assert (meta.provider, meta.model, meta.finish_reason) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        "stop",
    )
    assert meta.response_id.startswith("resp_")
    assert meta.tokens_in == 13 and meta.tokens_out == 5  # words, as the fake counts


def test_keepalive_and_obfuscation_are_ignored(fake_provider, openai, chat_request):
    fake_provider.script(
        "responses", Scenario(deltas=["Hel", "lo", "!"], keepalive=True, obfuscation=True)
    )
    assert text_of(openai.stream(chat_request)) == "Hello!"


def test_incomplete_stream_ends_with_its_reason(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(terminal="incomplete"))
    events = list(openai.stream(chat_request))
    assert text_of(events) == "Hello from the fake model."
    assert events[-1].meta.finish_reason == "max_output_tokens"


def test_complete_joins_message_parts_not_output_zero(openai, chat_request):
    # The fake puts a reasoning item first, as reasoning models do.
    reply = openai.complete(chat_request)
    assert reply.text == "Hello from the fake model."
    assert reply.meta.model == "gpt-4o-mini-2024-07-18"
    assert reply.meta.tokens_out == 5


def test_complete_incomplete_keeps_the_reason(fake_provider, openai, chat_request):
    fake_provider.script(
        "responses", Scenario(terminal="incomplete", incomplete_reason="content_filter")
    )
    assert openai.complete(chat_request).meta.finish_reason == "content_filter"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_refusal_is_a_content_policy_error(fake_provider, openai, chat_request, stream):
    fake_provider.script("responses", Scenario(refusal="I can't help with that."))
    with pytest.raises(ProviderContentPolicy) as info:
        list(openai.stream(chat_request)) if stream else openai.complete(chat_request)
    assert info.value.message == "I can't help with that."


# --- errors before the stream -------------------------------------------------------------------

STATUS_ERRORS = [
    (Scenario(status=400), ProviderBadRequest, "Unsupported parameter: 'temperature'"),
    (
        Scenario(status=400, error="content_policy_violation"),
        ProviderContentPolicy,
        "safety system",
    ),
    (Scenario(status=400, error="context_length_exceeded"), ProviderBadRequest, "context window"),
    (Scenario(status=401), ProviderAuthError, "Incorrect API key provided"),
    (Scenario(status=403), ProviderAuthError, "Country, region, or territory not supported"),
    (Scenario(status=404), ProviderModelNotFound, "The model `gpt-4o-mini` does not exist"),
    (Scenario(status=408), ProviderUnavailable, "Request timed out."),
    (Scenario(status=409), ProviderUnavailable, "still being processed"),
    (Scenario(status=413), ProviderBadRequest, "Request failed"),
    (Scenario(status=422), ProviderBadRequest, "Request failed"),
    (Scenario(status=429), ProviderRateLimited, "Rate limit reached for gpt-4o-mini"),
    (Scenario(status=429, error="insufficient_quota"), ProviderQuotaExceeded, "current quota"),
    (Scenario(status=500), ProviderUnavailable, "The server had an error"),
    (Scenario(status=503), ProviderUnavailable, "The engine is currently overloaded."),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(("scenario", "error", "reason"), STATUS_ERRORS)
def test_error_statuses_map_to_our_errors_with_the_reason(
    fake_provider, openai, chat_request, stream, scenario, error, reason
):
    fake_provider.script("responses", scenario)
    with pytest.raises(error) as info:
        list(openai.stream(chat_request)) if stream else openai.complete(chat_request)
    exc = info.value
    assert type(exc) is error
    assert exc.provider == "openai" and exc.status == scenario.status
    assert reason in exc.message
    assert exc.request_id.startswith("req_")  # x-request-id, for logs


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry_after_ms": "1500"}, 1.5),
        ({"retry_after": "7"}, 7.0),
        ({"retry_after_ms": "40", "retry_after": "7"}, 0.04),  # milliseconds win
        ({}, None),
    ],
)
def test_rate_limit_carries_retry_after(fake_provider, openai, chat_request, headers, expected):
    fake_provider.script("responses", Scenario(status=429, **headers))
    with pytest.raises(ProviderRateLimited) as info:
        list(openai.stream(chat_request))
    assert info.value.retry_after == expected


def test_retry_after_as_http_date(fake_provider, openai, chat_request):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake_provider.script("responses", Scenario(status=429, retry_after=when))
    with pytest.raises(ProviderRateLimited) as info:
        openai.complete(chat_request)
    assert 25 < info.value.retry_after <= 30


def test_should_retry_header_is_kept(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(status=503, should_retry=False))
    with pytest.raises(ProviderUnavailable) as info:
        openai.complete(chat_request)
    assert info.value.retryable is False


def test_wrong_key_gets_the_real_401(fake_provider, settings, http_client, chat_request):
    adapter = OpenAIProvider(
        dataclasses.replace(settings, openai_api_key="sk-wrong-1234"), http_client
    )
    with pytest.raises(ProviderAuthError) as info:
        list(adapter.stream(chat_request))
    assert info.value.code == "invalid_api_key"
    assert "Incorrect API key provided: sk-***1234" in info.value.message


# --- errors inside a 200 stream -----------------------------------------------------------------


@pytest.mark.parametrize("flat", [False, True], ids=["nested-live-shape", "flat-documented-shape"])
@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("insufficient_quota", ProviderQuotaExceeded),
        ("rate_limit_exceeded", ProviderRateLimited),
        ("server_error", ProviderUnavailable),
    ],
)
def test_inband_error_event_in_both_shapes(fake_provider, openai, chat_request, flat, code, error):
    fake_provider.script("responses", Scenario(inband_error=True, error=code, flat_error=flat))
    with pytest.raises(error) as info:
        list(openai.stream(chat_request))
    assert info.value.status is None
    assert info.value.message  # the provider's own words, never empty


def test_response_failed_without_error_event(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(deltas=[], terminal="failed"))
    with pytest.raises(ProviderUnavailable) as info:
        list(openai.stream(chat_request))
    assert info.value.code == "server_error"
    assert "error occurred while processing" in info.value.message


def test_json_body_with_failed_status(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(body_error=True, error="insufficient_quota"))
    with pytest.raises(ProviderQuotaExceeded):
        openai.complete(chat_request)


def test_error_after_deltas_is_raised_after_them(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(fail_after=2))
    received = []
    with pytest.raises(ProviderUnavailable):
        for event in openai.stream(chat_request):
            received.append(event)
    assert text_of(received) == "Hello from"


# --- broken streams and transport ---------------------------------------------------------------


def test_eof_without_terminal_event_is_malformed(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(truncate_after=2))
    with pytest.raises(ProviderMalformed, match="terminal event"):
        list(openai.stream(chat_request))


def test_connection_cut_mid_chunk_is_a_connection_error(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(cut_after=1))
    with pytest.raises(ProviderConnectionError, match="incomplete chunked read"):
        list(openai.stream(chat_request))


def test_invalid_json_event_is_malformed(fake_provider, openai, chat_request):
    fake_provider.script("responses", Scenario(malformed=True))
    with pytest.raises(ProviderMalformed, match="invalid JSON"):
        list(openai.stream(chat_request))


def test_silence_past_the_read_timeout(fake_provider, settings, chat_request):
    short = dataclasses.replace(settings, timeout_seconds=0.3)  # timeouts live on the client
    fake_provider.script("responses", Scenario(hang_s=1))
    with make_http_client(short) as client, pytest.raises(ProviderTimeout) as info:
        list(OpenAIProvider(short, client).stream(chat_request))
    assert info.value.code == "read_timeout"


def test_connection_refused(settings, http_client, chat_request):
    adapter = OpenAIProvider(
        dataclasses.replace(settings, openai_base_url=closed_port_url() + "/v1"), http_client
    )
    with pytest.raises(ProviderConnectionError, match="could not connect"):
        list(adapter.stream(chat_request))


def test_closing_the_stream_closes_the_upstream_request(fake_provider, openai, chat_request):
    fake_provider.script(
        "responses", Scenario(deltas=[f"w{i} " for i in range(200)], token_delay_ms=10)
    )
    events = openai.stream(chat_request)
    assert next(events) == Text("w0 ")
    assert next(events) == Text("w1 ")
    events.close()  # the user pressed Stop
    assert fake_provider.wait_for_disconnects(1, timeout=3)
    (call,) = fake_provider.calls("responses")
    assert call.disconnected and not call.completed


def test_history_turn_roles_are_kept(fake_provider, openai):
    history = [ChatTurn("user", "a"), ChatTurn("assistant", "b"), ChatTurn("user", "c")]
    openai.complete(ChatRequest(system="", history=history, message="d"))
    items = fake_provider.calls("responses")[0].json["input"]
    assert [(i["role"], i["content"]) for i in items] == [
        ("user", "a"),
        ("assistant", "b"),
        ("user", "c"),
        ("user", "d"),
    ]
