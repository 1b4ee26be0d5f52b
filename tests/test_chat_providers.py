"""Chat through the app against the fake provider server over real HTTP: wire bodies, streaming
on each provider, every fallback rule, failures after the first token, Stop, heartbeats."""

from __future__ import annotations

import logging
import time

import pytest

from app.extensions import db
from app.llm import close_client
from app.models import Message
from tests.factories import make_project
from tests.sse import parse_sse, read_stream, turn_id_of
from tools.fake_provider import Scenario, closed_port_url

pytestmark = pytest.mark.use_fake(
    OPENROUTER_REFERER="https://prompthub.example",
    LLM_TIMEOUT_SECONDS=0.6,
    LLM_RETRY_MAX_WAIT_SECONDS=0.3,
)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are Ada's support bot.")


def send(client, owner, project_id, message="Hi", **body):
    return client.post(
        f"/api/projects/{project_id}/chat", json={"message": message, **body}, headers=owner.headers
    )


def stream(client, owner, project_id, message="Hi", **body):
    resp = send(client, owner, project_id, message, stream=True, **body)
    assert resp.status_code == 200
    events, comments = parse_sse(resp.get_data(as_text=True))
    return events, comments


def chat_stream(client, owner, project_id, message):
    return client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": message, "stream": True},
        headers=owner.headers,
        buffered=False,
    )


def stop_when(client, owner, project_id, message, seen) -> str:
    """Stream a chat and press Stop (``POST /api/turns/<id>/stop``) as soon as
    ``seen(received_so_far)`` is true; read on to the terminal event and return everything."""
    stopped = []

    def stop_once(received: str) -> None:
        if not stopped and seen(received):
            r = client.post(f"/api/turns/{turn_id_of(received)}/stop", headers=owner.headers)
            assert r.status_code == 200, r.get_json()
            stopped.append(True)

    return read_stream(chat_stream(client, owner, project_id, message), on_chunk=stop_once)


def leave_when(client, owner, project_id, message, seen) -> int:
    """Stream a chat and close the stream (a closed tab) when ``seen(received)``; the turn id."""
    return turn_id_of(read_stream(chat_stream(client, owner, project_id, message), until=seen))


def wait_final(app, turn_id, timeout=10.0) -> Message:
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            m = db.session.get(Message, turn_id)
            if m.status not in ("streaming", "stopping") or time.monotonic() > deadline:
                db.session.expunge(m)
                return m
        time.sleep(0.02)


def stored(app, message_id):
    with app.app_context():
        m = db.session.get(Message, message_id)
        return {
            k: getattr(m, k)
            for k in (
                "status",
                "content",
                "provider",
                "model",
                "fallback",
                "error",
                "tokens_in",
                "tokens_out",
            )
        }


# --- what crosses the wire ------------------------------------------------------------------


def test_openai_request_body_carries_prompt_history_and_settings(client, owner, project_id, fake):
    cid = send(client, owner, project_id, "First question").get_json()["conversation_id"]
    send(client, owner, project_id, "Second question", conversation_id=cid)
    body = fake.calls("responses")[-1].json
    assert body["model"] == "gpt-4o-mini"
    assert body["instructions"] == "You are Ada's support bot."
    assert body["input"] == [
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "Hello from the fake model."},
        {"role": "user", "content": "Second question"},
    ]
    assert body["store"] is False
    assert body["max_output_tokens"] == 1024
    assert "previous_response_id" not in body
    assert fake.calls("responses")[-1].headers["Authorization"] == "Bearer test-openai-key"


def test_history_budget_keeps_the_newest_messages(app, client, owner, project_id, fake):
    app.config["CHAT_HISTORY_MAX_MESSAGES"] = 2
    cid = send(client, owner, project_id, "one").get_json()["conversation_id"]
    send(client, owner, project_id, "two", conversation_id=cid)
    send(client, owner, project_id, "three", conversation_id=cid)
    items = fake.calls("responses")[-1].json["input"]
    assert [i["content"] for i in items] == ["two", "Hello from the fake model.", "three"]


def test_streaming_on_openai_stores_metadata(app, client, owner, project_id, fake):
    app.config["CHAT_STREAM_COALESCE_MS"] = 0  # each provider delta is its own event
    fake.script("responses", Scenario(deltas=["Hel", "lo", " Ada"], keepalive=True))
    events, _ = stream(client, owner, project_id)
    assert [d["text"] for n, d in events if n == "delta"] == ["Hel", "lo", " Ada"]
    done = events[-1]
    assert done[0] == "done"
    row = stored(app, done[1]["message"]["id"])
    assert row["content"] == "Hello Ada"
    assert (row["provider"], row["model"], row["fallback"]) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        False,
    )
    assert row["tokens_out"] == 2 and row["tokens_in"] > 0


@pytest.mark.parametrize("usage_variant", ["empty_choices", "one_choice"])
def test_openrouter_alone_streams_and_reads_usage(
    app, client, owner, project_id, fake, usage_variant
):
    app.config["OPENAI_API_KEY"] = None
    fake.script("chat", Scenario(usage_variant=usage_variant, keepalive=True, ttft_ms=50))
    events, _ = stream(client, owner, project_id, "Hey")
    assert events[-1][0] == "done"
    row = stored(app, events[-1][1]["message"]["id"])
    assert (row["provider"], row["model"], row["fallback"]) == (
        "openrouter",
        "openai/gpt-4o-mini",
        False,
    )
    assert row["tokens_out"] == 5
    call = fake.calls("chat")[0]
    assert call.json["messages"][0] == {"role": "system", "content": "You are Ada's support bot."}
    assert call.json["messages"][-1] == {"role": "user", "content": "Hey"}
    assert call.json["max_tokens"] == 1024
    assert call.headers["Http-Referer"] == "https://prompthub.example"
    assert call.headers["X-Title"] == "PromptHub"
    assert fake.calls("responses") == []


def test_non_streaming_on_each_provider(app, client, owner, project_id, fake):
    assert send(client, owner, project_id).get_json()["message"]["provider"] == "openai"
    app.config["OPENAI_API_KEY"] = None
    close_client(app)  # the chain is built once per process; rebuild it from the new config
    body = send(client, owner, project_id).get_json()
    assert body["reply"] == "Hello from the fake model."
    assert body["message"]["provider"] == "openrouter"


def test_no_keys_means_offline_and_no_network(app, client, owner, project_id, fake):
    app.config["OPENAI_API_KEY"] = app.config["OPENROUTER_API_KEY"] = None
    assert send(client, owner, project_id).get_json()["message"]["provider"] == "offline"
    assert fake.requests == []


# --- the fallback table -------------------------------------------------------------------

FALLS_BACK = [
    # (scenario for OpenAI, OpenAI calls expected)
    pytest.param(Scenario(status=500), 2, id="500-retried-once-then-fallback"),
    pytest.param(Scenario(status=503), 2, id="503-retried-once-then-fallback"),
    pytest.param(
        Scenario(status=429, retry_after="30"), 1, id="429-long-retry-after-falls-back-at-once"
    ),
    pytest.param(Scenario(status=429), 1, id="429-without-retry-hint-falls-back"),
    pytest.param(Scenario(status=429, error="insufficient_quota"), 1, id="quota-never-retried"),
    pytest.param(
        Scenario(inband_error=True, error="insufficient_quota"), 1, id="inband-nested-error"
    ),
    pytest.param(
        Scenario(inband_error=True, flat_error=True, error="server_error"),
        2,
        id="inband-flat-error-retried",
    ),
    pytest.param(Scenario(truncate_after=0), 1, id="eof-without-terminal-event"),
    pytest.param(Scenario(cut_after=0), 2, id="connection-cut-before-text"),
    pytest.param(Scenario(malformed=True), 1, id="malformed-event"),
    pytest.param(Scenario(hang_s=1.2), 1, id="read-timeout"),
    pytest.param(Scenario(status=401), 1, id="auth-error-falls-back-loudly"),
    pytest.param(Scenario(status=404), 1, id="model-not-found-falls-back-loudly"),
]


@pytest.mark.parametrize(("scenario", "openai_calls"), FALLS_BACK)
def test_failures_before_the_first_token_fall_back(
    app, client, owner, project_id, fake, scenario, openai_calls
):
    fake.script("responses", scenario, scenario)
    events, _ = stream(client, owner, project_id)
    assert events[-1][0] == "done", events[-1]
    row = stored(app, events[-1][1]["message"]["id"])
    assert (row["provider"], row["fallback"], row["status"]) == ("openrouter", True, "complete")
    assert row["content"] == "Hello from the fake model."
    assert len(fake.calls("responses")) == openai_calls
    assert len(fake.calls("chat")) == 1
    # The fallback saw exactly what the primary saw.
    assert fake.calls("chat")[0].json["messages"][-1]["content"] == "Hi"


def test_short_retry_after_is_honoured_on_the_primary(app, client, owner, project_id, fake):
    fake.script("responses", Scenario(status=429, retry_after_ms="50"))
    events, _ = stream(client, owner, project_id)
    row = stored(app, events[-1][1]["message"]["id"])
    assert (row["provider"], row["fallback"]) == ("openai", False)
    assert len(fake.calls("responses")) == 2
    assert fake.calls("chat") == []


def test_connection_refused_falls_back(app, client, owner, project_id, fake):
    app.config["OPENAI_BASE_URL"] = closed_port_url() + "/v1"
    body = send(client, owner, project_id).get_json()
    assert (body["message"]["provider"], body["message"]["fallback"]) == ("openrouter", True)


def test_auth_errors_on_the_primary_are_logged_at_error_level(
    client, owner, project_id, fake, caplog
):
    fake.script("responses", Scenario(status=401))
    with caplog.at_level(logging.WARNING, logger="app.providers.chain"):
        send(client, owner, project_id)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "auth" in errors[0].getMessage()
    assert "test-openai-key" not in caplog.text


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(Scenario(status=400), id="bad-request"),
        pytest.param(
            Scenario(
                status=400,
                error="content_policy_violation",
                message="Your request was rejected by the safety system.",
            ),
            id="content-policy",
        ),
    ],
)
def test_bad_requests_and_policy_refusals_never_fall_back(
    app, client, owner, project_id, fake, scenario
):
    fake.script("responses", scenario)
    events, _ = stream(client, owner, project_id)
    name, data = events[-1]
    assert name == "error"
    assert data["partial"] is False
    assert data["error"]["message"].startswith("OpenAI: ")
    assert fake.calls("chat") == []
    row = stored(app, data["message"]["id"])
    assert row["status"] == "error" and row["content"] == ""


def test_openrouter_moderation_is_not_evaded(app, client, owner, project_id, fake):
    app.config["OPENAI_API_KEY"] = None
    fake.script("chat", Scenario(status=403, moderation=True))
    resp = send(client, owner, project_id)
    assert resp.status_code == 502
    assert resp.get_json()["error"]["code"] == "content_policy"


# --- after the first token: no fallback, no replay ------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "scenario"),
    [
        ("responses", Scenario(fail_after=2, error="server_error")),
        ("responses", Scenario(cut_after=2)),
        ("responses", Scenario(truncate_after=2)),
        ("chat", Scenario(fail_after=2, int_code=True, raw="upstream overloaded")),
        ("chat", Scenario(fail_after=2, int_code=False)),
    ],
    ids=["openai-inband", "openai-cut", "openai-eof", "openrouter-int-code", "openrouter-str-code"],
)
def test_failure_after_text_keeps_the_partial_reply(
    app, client, owner, project_id, fake, endpoint, scenario
):
    if endpoint == "chat":
        app.config["OPENAI_API_KEY"] = None
    fake.script(endpoint, scenario)
    events, _ = stream(client, owner, project_id)
    names = [n for n, _ in events]
    assert names[-1] == "error" and names.count("error") == 1 and "done" not in names
    data = events[-1][1]
    assert data["partial"] is True
    row = stored(app, data["message"]["id"])
    assert row["status"] == "incomplete"
    assert row["content"] == "Hello from"
    assert row["error"]
    # Who wrote the partial text is recorded, though no usage or end event arrived.
    assert (row["provider"], row["fallback"]) == (
        "openai" if endpoint == "responses" else "openrouter",
        False,
    )
    assert row["model"] == ("gpt-4o-mini" if endpoint == "responses" else "openai/gpt-4o-mini")
    other = "chat" if endpoint == "responses" else "responses"
    assert fake.calls(other) == []
    if scenario.raw:
        assert "upstream overloaded" in data["error"]["message"]


def test_both_providers_down(app, client, owner, project_id, fake):
    fake.script("responses", Scenario(status=503), Scenario(status=503))
    down = Scenario(status=502, raw="no healthy upstream")
    fake.script("chat", down, down)  # one short retry on each provider
    resp = send(client, owner, project_id, "Still there?")
    assert resp.status_code == 502
    err = resp.get_json()["error"]
    assert err["code"] == "provider_unavailable"
    assert "OpenRouter" in err["message"] and "no healthy upstream" in err["message"]
    with app.app_context():
        rows = db.session.query(Message).order_by(Message.id).all()
        assert [(m.role, m.status) for m in rows] == [("user", "complete"), ("assistant", "error")]
        assert rows[0].content == "Still there?"


def test_both_down_while_streaming_ends_with_one_error_event(app, client, owner, project_id, fake):
    fake.script("responses", Scenario(status=500), Scenario(status=500))
    fake.script("chat", Scenario(status=503), Scenario(status=503))
    events, _ = stream(client, owner, project_id)
    names = [n for n, _ in events]
    assert names == ["start", "error"]
    assert events[-1][1]["error"]["code"] == "provider_unavailable"


def test_openrouter_200_body_with_error_is_an_error(app, client, owner, project_id, fake):
    app.config["OPENAI_API_KEY"] = None
    fake.script(
        "chat", Scenario(body_error=True, raw="error code: 1015"), Scenario(body_error=True)
    )
    resp = send(client, owner, project_id)
    assert resp.status_code == 502
    assert "error code: 1015" in resp.get_json()["error"]["message"]


# --- stream plumbing ------------------------------------------------------------------------


def test_heartbeats_while_the_model_is_silent(app, client, owner, project_id, fake):
    app.config["CHAT_HEARTBEAT_SECONDS"] = 0.05
    fake.script("responses", Scenario(ttft_ms=400))
    events, comments = stream(client, owner, project_id)
    assert "keep-alive" in comments
    assert events[-1][0] == "done"


def test_stop_stores_the_partial_reply_and_closes_the_upstream_request(
    app, client, owner, project_id, fake
):
    fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(200)], token_delay_ms=20))
    got = stop_when(
        client, owner, project_id, "long one", lambda got: got.count("event: delta") >= 3
    )
    events, _ = parse_sse(got)
    name, data = events[-1]  # Stop ends the turn with what arrived, as a done
    assert name == "done" and data["message"]["status"] == "incomplete"
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not fake.disconnects:
        time.sleep(0.02)
    assert fake.disconnects == 1
    assert not fake.calls("responses")[0].completed
    with app.app_context():
        reply = db.session.query(Message).filter_by(role="assistant").one()
        assert reply.status == "incomplete"
        assert (reply.provider, reply.model) == ("openai", "gpt-4o-mini")
        assert reply.content.startswith("w0 w1")
        assert len(reply.content.split()) < 200


def test_stop_while_the_model_is_silent_closes_the_upstream_at_once(
    app, client, owner, project_id, fake
):
    """OpenRouter sends its headers, then only ``: OPENROUTER PROCESSING`` comments while the
    model thinks, so the read never yields an event. Stop must still close the request then,
    not when the first token comes (here 10 s later), and must not try another provider."""
    app.config["CHAT_HEARTBEAT_SECONDS"] = 0.05
    app.config["OPENAI_API_KEY"] = None
    fake.script("chat", Scenario(ttft_ms=10_000))
    # Stop while the model is silent and we are waiting on it.
    stop_when(client, owner, project_id, "think hard", lambda got: ": keep-alive" in got)

    assert fake.wait_for_disconnects(1, timeout=3)  # the fake sees it at its next comment
    (call,) = fake.calls("chat")
    assert not call.completed
    assert fake.calls("responses") == []
    with app.app_context():
        reply = db.session.query(Message).filter_by(role="assistant").one()
        assert (reply.status, reply.content, reply.provider) == ("incomplete", "", None)


@pytest.mark.parametrize(
    "scenario",
    [
        # Headers held back until the first token: the Stop takes effect when they arrive (the
        # first token may come in the same read; then the Stop wins at the commit point).
        pytest.param(
            Scenario(ttft_ms=1500, deltas=["w "] * 100, token_delay_ms=20), id="no-headers"
        ),
        # Headers and an empty delta at once, then a silent model: the Stop breaks the read.
        pytest.param(Scenario(deltas=["", "w "], token_delay_ms=1500), id="silent-model"),
    ],
)
def test_a_stopped_call_is_neither_retried_nor_sent_to_the_fallback(
    app, client, owner, project_id, fake, scenario
):
    """A Stop while OpenAI has sent no text yet: the read it breaks is not a provider failure, so
    the turn is not retried on OpenAI nor sent to OpenRouter. (The read timeout is longer than
    the model's silence here: with this module's 0.6 s, a Stop later than that under load would
    find a read timeout, which rightly falls back.)

    No waiting for something not to happen: the terminal event is sent only after the provider
    chain has returned (the relay reads the chain to its end before the turn is stored), and the
    chain sends any retry or fallback request, which the fake records on arrival, before it
    returns. So once the stream has ended, every request the turn will ever make is recorded."""
    app.config["CHAT_HEARTBEAT_SECONDS"] = 0.05
    app.config["LLM_TIMEOUT_SECONDS"] = 5
    fake.script("responses", scenario)
    fake.script("chat", Scenario(deltas=["fallback "] * 100, token_delay_ms=20))
    got = stop_when(client, owner, project_id, "stop me", lambda got: ": keep-alive" in got)

    events, _ = parse_sse(got)
    name, data = events[-1]
    assert (name, data["message"]["status"]) == ("done", "incomplete")
    assert [n for n, _ in events if n == "delta"] == []
    assert [(c.endpoint, c.completed) for c in fake.requests] == [("responses", False)]
    assert fake.wait_for_disconnects(1, timeout=5)
    with app.app_context():
        reply = db.session.get(Message, data["message"]["id"])
        assert (reply.status, reply.content, reply.fallback) == ("incomplete", "", False)


def test_closing_the_stream_does_not_stop_the_reply(app, client, owner, project_id, fake):
    """A closed tab, a reload, a lost network: the reply goes on and is stored whole."""
    words = [f"w{i} " for i in range(40)]
    fake.script("responses", Scenario(deltas=words, token_delay_ms=10))
    turn_id = leave_when(client, owner, project_id, "go on", lambda got: "event: delta" in got)
    reply = wait_final(app, turn_id)
    assert (reply.status, reply.content) == ("complete", "".join(words))
    assert fake.disconnects == 0
    assert fake.calls("responses")[0].completed


def test_no_database_connection_is_held_while_the_reply_streams(
    app, client, owner, project_id, fake
):
    fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(20)], token_delay_ms=20))
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "hold nothing", "stream": True},
        headers=owner.headers,
        buffered=False,
    )
    received = ""
    checked_out = []
    for chunk in resp.response:
        received += chunk.decode() if isinstance(chunk, bytes) else chunk
        if "event: delta" in received and not checked_out:
            with app.app_context():
                checked_out.append(db.engine.pool.checkedout())
    resp.close()
    assert checked_out == [0]  # the pool caps concurrent streams otherwise
    assert "event: done" in received


def test_deltas_arriving_together_are_coalesced_but_the_first_is_not_delayed(
    app, client, owner, project_id, fake
):
    app.config["CHAT_STREAM_COALESCE_MS"] = 60
    pieces = [f"w{i} " for i in range(20)]
    fake.script("responses", Scenario(deltas=pieces, token_delay_ms=5))
    events, _ = stream(client, owner, project_id)
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert "".join(deltas) == "".join(pieces)
    assert len(deltas) <= 6  # ~100 ms of tokens in 60 ms windows, not 20 writes
    assert deltas[0].startswith("w0 ")
    assert events[-1][0] == "done"


def test_without_coalescing_each_provider_delta_is_its_own_event(
    app, client, owner, project_id, fake
):
    app.config["CHAT_STREAM_COALESCE_MS"] = 0
    pieces = [f"w{i} " for i in range(5)]
    fake.script("responses", Scenario(deltas=pieces, token_delay_ms=30))
    events, _ = stream(client, owner, project_id)
    assert [data["text"] for name, data in events if name == "delta"] == pieces
