"""The OpenRouter chat-completions adapter against the fake server: request bodies and headers,
stream parsing (comments, usage variants, empty choices, error chunks) and error mapping."""

from __future__ import annotations

import dataclasses

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
from app.providers.openrouter import OpenRouterProvider, to_openai_model, to_openrouter_model
from app.providers.transport import make_http_client
from tests.providers.conftest import make_request, text_of
from tools.fake_provider import Scenario, closed_port_url

# --- what crosses the wire ----------------------------------------------------------------------


def test_stream_request_body_and_attribution_headers(fake_provider, openrouter, chat_request):
    list(openrouter.stream(chat_request))
    (call,) = fake_provider.calls("chat")
    assert call.headers["Authorization"] == "Bearer test-openrouter-key"
    assert call.headers["HTTP-Referer"] == "https://prompthub.example"
    assert call.headers["X-Title"] == "PromptHub"
    assert call.headers["X-OpenRouter-Title"] == "PromptHub"
    assert call.json == {
        "model": "openai/gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What is 2+2?"},
        ],
        "stream": True,
        "max_tokens": 1024,
    }


def test_attribution_headers_only_when_configured(fake_provider, settings, http_client):
    plain = dataclasses.replace(settings, openrouter_referer=None, openrouter_title=None)
    OpenRouterProvider(plain, http_client).complete(make_request())
    headers = fake_provider.calls("chat")[0].headers
    assert "HTTP-Referer" not in headers and "X-Title" not in headers


def test_max_tokens_always_sent_and_temperature_when_set(fake_provider, openrouter):
    models = {"openai": "gpt-4o", "openrouter": "openai/gpt-4o"}
    openrouter.complete(make_request(models=models, temperature=0.7, max_output_tokens=300))
    body = fake_provider.calls("chat")[0].json
    assert body["model"] == "openai/gpt-4o"  # the request's OpenRouter id
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0.7
    assert body["stream"] is False


def test_model_id_mapping():
    assert to_openrouter_model("gpt-4o-mini") == "openai/gpt-4o-mini"
    assert to_openrouter_model("anthropic/claude-haiku-4.5") == "anthropic/claude-haiku-4.5"
    assert to_openai_model("openai/gpt-4o-mini") == "gpt-4o-mini"
    assert to_openai_model("openai/gpt-4o-mini:online") == "gpt-4o-mini"
    assert to_openai_model("gpt-4o") == "gpt-4o"


def test_configured_openai_style_model_is_mapped(fake_provider, settings, http_client):
    adapter = OpenRouterProvider(
        dataclasses.replace(settings, openrouter_model="gpt-4o-mini"), http_client
    )
    assert adapter.model == "openai/gpt-4o-mini"


# --- successful replies -------------------------------------------------------------------------


@pytest.mark.parametrize("usage_variant", ["empty_choices", "one_choice"])
def test_stream_reads_usage_from_either_chunk_shape(
    fake_provider, openrouter, chat_request, usage_variant
):
    fake_provider.script("chat", Scenario(usage_variant=usage_variant))
    events = list(openrouter.stream(chat_request))
    assert text_of(events) == "Hello from the fake model."
    end = events[-1]
    assert isinstance(end, Done)
    assert (end.meta.provider, end.meta.model) == ("openrouter", "openai/gpt-4o-mini")
    assert (end.meta.tokens_in, end.meta.tokens_out) == (13, 5)
    assert end.meta.finish_reason == "stop"
    assert end.meta.response_id.startswith("gen-")


def test_processing_comments_and_keepalives_are_skipped(fake_provider, openrouter, chat_request):
    fake_provider.script(
        "chat", Scenario(ttft_ms=120, keepalive=True, deltas=["a", "b"], token_delay_ms=5)
    )
    events = list(openrouter.stream(chat_request))
    assert [e.text for e in events[:-1]] == ["a", "b"]


def test_length_finish_reason_is_kept(fake_provider, openrouter, chat_request):
    fake_provider.script("chat", Scenario(terminal="incomplete"))
    assert list(openrouter.stream(chat_request))[-1].meta.finish_reason == "length"


def test_complete_reads_the_message(openrouter, chat_request):
    reply = openrouter.complete(chat_request)
    assert reply.text == "Hello from the fake model."
    assert (reply.meta.tokens_in, reply.meta.tokens_out, reply.meta.finish_reason) == (
        13,
        5,
        "stop",
    )


def test_refusal_is_a_content_policy_error(fake_provider, openrouter, chat_request):
    fake_provider.script("chat", Scenario(refusal="I can't help with that."))
    with pytest.raises(ProviderContentPolicy, match="can't help"):
        openrouter.complete(chat_request)


# --- errors -------------------------------------------------------------------------------------

STATUS_ERRORS = [
    (Scenario(status=400), ProviderBadRequest, "messages must be a non-empty array"),
    (Scenario(status=401), ProviderAuthError, "User not found."),
    (Scenario(status=402), ProviderQuotaExceeded, "requires more credits"),
    (Scenario(status=403, moderation=True), ProviderContentPolicy, "flagged for"),
    (Scenario(status=403, error="guardrail"), ProviderContentPolicy, "guardrail"),
    (Scenario(status=403), ProviderAuthError, "Key is disabled"),
    (Scenario(status=404), ProviderModelNotFound, "No endpoints found"),
    (Scenario(status=408), ProviderUnavailable, "Operation timed out."),
    (Scenario(status=413), ProviderBadRequest, "Invalid request"),
    (Scenario(status=422), ProviderBadRequest, "Invalid request"),
    (Scenario(status=429), ProviderRateLimited, "temporarily rate-limited upstream"),
    (Scenario(status=500), ProviderUnavailable, "Internal Server Error"),
    (Scenario(status=502, raw="no healthy upstream"), ProviderUnavailable, "no healthy upstream"),
    (Scenario(status=503, raw="capacity"), ProviderUnavailable, "No allowed providers"),
    (Scenario(status=524), ProviderUnavailable, "Internal Server Error"),
    (Scenario(status=529), ProviderUnavailable, "Internal Server Error"),
    # metadata.error_type refines a status
    (
        Scenario(status=400, error="context_length_exceeded"),
        ProviderBadRequest,
        "Invalid request",
    ),
    (Scenario(status=503, error="provider_overloaded"), ProviderUnavailable, "No allowed"),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(("scenario", "error", "reason"), STATUS_ERRORS)
def test_error_statuses_map_to_our_errors_with_the_reason(
    fake_provider, openrouter, chat_request, stream, scenario, error, reason
):
    fake_provider.script("chat", scenario)
    with pytest.raises(error) as info:
        list(openrouter.stream(chat_request)) if stream else openrouter.complete(chat_request)
    exc = info.value
    assert type(exc) is error
    assert exc.provider == "openrouter" and exc.status == scenario.status
    assert reason in exc.message
    if scenario.raw:
        assert scenario.raw in exc.message  # metadata.raw: the upstream's own words


def test_moderation_message_never_copies_the_flagged_input(fake_provider, openrouter):
    fake_provider.script("chat", Scenario(status=403, moderation=True))
    with pytest.raises(ProviderContentPolicy) as info:
        openrouter.complete(make_request())
    assert "harassment" in info.value.message
    assert "flagged part of the input" not in info.value.message


def test_rate_limit_carries_retry_after(fake_provider, openrouter, chat_request):
    fake_provider.script("chat", Scenario(status=429, retry_after="3"))
    with pytest.raises(ProviderRateLimited) as info:
        list(openrouter.stream(chat_request))
    assert info.value.retry_after == 3.0


@pytest.mark.parametrize("int_code", [True, False], ids=["int-code", "string-code"])
def test_error_chunk_before_any_text(fake_provider, openrouter, chat_request, int_code):
    fake_provider.script(
        "chat", Scenario(inband_error=True, error="rate_limit_exceeded", int_code=int_code)
    )
    with pytest.raises(ProviderRateLimited, match="Rate limit exceeded"):
        list(openrouter.stream(chat_request))


@pytest.mark.parametrize("int_code", [True, False], ids=["int-code", "string-code"])
def test_error_chunk_after_text(fake_provider, openrouter, chat_request, int_code):
    fake_provider.script("chat", Scenario(fail_after=2, int_code=int_code, raw="upstream reset"))
    received = []
    with pytest.raises(ProviderUnavailable, match="upstream reset"):
        for event in openrouter.stream(chat_request):
            received.append(event)
    assert text_of(received) == "Hello from"


@pytest.mark.parametrize(
    ("scenario", "error", "reason"),
    [
        (Scenario(body_error=True), ProviderRateLimited, "error code: 1015"),
        (
            Scenario(body_error=True, error="server_error", error_in_choice=True),
            ProviderUnavailable,
            "Internal server error",
        ),
    ],
    ids=["top-level-error", "choice-error"],
)
def test_200_body_carrying_an_error(
    fake_provider, openrouter, chat_request, scenario, error, reason
):
    fake_provider.script("chat", scenario)
    with pytest.raises(error, match=reason):
        openrouter.complete(chat_request)


def test_eof_before_done_is_malformed(fake_provider, openrouter, chat_request):
    fake_provider.script("chat", Scenario(truncate_after=3))
    with pytest.raises(ProviderMalformed, match=r"\[DONE\]"):
        list(openrouter.stream(chat_request))


def test_invalid_json_chunk_is_malformed(fake_provider, openrouter, chat_request):
    fake_provider.script("chat", Scenario(malformed=True))
    with pytest.raises(ProviderMalformed, match="invalid JSON"):
        list(openrouter.stream(chat_request))


def test_connection_cut_is_a_connection_error(fake_provider, openrouter, chat_request):
    fake_provider.script("chat", Scenario(cut_after=0))
    with pytest.raises(ProviderConnectionError):
        list(openrouter.stream(chat_request))


def test_silence_past_the_read_timeout(fake_provider, settings, chat_request):
    short = dataclasses.replace(settings, timeout_seconds=0.3)
    fake_provider.script("chat", Scenario(hang_s=1))
    with make_http_client(short) as client, pytest.raises(ProviderTimeout):
        list(OpenRouterProvider(short, client).stream(chat_request))


def test_connection_refused(settings, http_client, chat_request):
    adapter = OpenRouterProvider(
        dataclasses.replace(settings, openrouter_base_url=closed_port_url() + "/api/v1"),
        http_client,
    )
    with pytest.raises(ProviderConnectionError):
        adapter.complete(chat_request)


def test_closing_the_stream_closes_the_upstream_request(fake_provider, openrouter, chat_request):
    fake_provider.script("chat", Scenario(deltas=[f"w{i} " for i in range(200)], token_delay_ms=10))
    events = openrouter.stream(chat_request)
    assert next(events) == Text("w0 ")
    events.close()
    assert fake_provider.wait_for_disconnects(1, timeout=3)
    assert not fake_provider.calls("chat")[0].completed
