"""The line under a reply is built once, on the server (``app/chat/render.py`` ``meta_line``):
the chat page renders it and the message JSON with ``html=1`` (the stream's ``done``/``error``
events, a page of messages) carries it as ``meta``. Here: the wording, and that the page, the
stream and the API say the same thing. tests/browser/test_meta_line.py checks what the browser
shows."""

from __future__ import annotations

import re
from html import unescape
from types import SimpleNamespace

import pytest

from app.chat.render import FAILURE_REASONS, GENERAL_FAILURE, ending, meta_line
from app.chat.replies import STOPPED_TEXT
from tests.factories import make_project
from tests.sse import parse_sse

DOWN = {"status": 503, "message": "The engine is currently overloaded."}


pytestmark = pytest.mark.use_fake(LLM_RETRY_MAX_WAIT_SECONDS=0.1)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="Be kind.")


def reply(**values):
    fields = {
        "provider": None, "model": None, "fallback": False, "prompt_version": None,
        "tokens_in": None, "tokens_out": None, "total_ms": None, "context_files": None,
        "status": "complete", "role": "assistant", "error": None, "error_kind": None,
    }  # fmt: skip
    return SimpleNamespace(**{**fields, **values})


@pytest.mark.parametrize(
    ("values", "line"),
    [
        (
            {
                "provider": "openrouter",
                "model": "openai/gpt-4o",
                "fallback": True,
                "prompt_version": SimpleNamespace(version=3),
                "tokens_in": 12,
                "tokens_out": 40,
                "total_ms": 1249,
            },
            "openai/gpt-4o · openrouter (fallback) · prompt v3 · 12→40 tokens · 1.2 s",
        ),  # fmt: skip
        ({"tokens_out": 5}, "0→5 tokens"),
        ({"total_ms": 0, "status": "error"}, "0.0 s · error"),
        ({"status": "streaming"}, "replying…"),
        ({"status": "stopping"}, "replying…"),
        ({"status": "interrupted"}, "interrupted"),
        ({"status": "incomplete", "error_kind": "stopped"}, "stopped"),
        ({"status": "incomplete", "error_kind": "timeout"}, "incomplete"),
        ({"status": "incomplete", "error": STOPPED_TEXT}, "stopped"),  # stored before error_kind
        ({}, ""),
        (
            {
                "context_files": [
                    {"name": "a.txt", "included": True, "truncated": False},
                    {"name": "b.pdf", "included": True, "truncated": True},
                    {"name": "c.md", "included": False, "truncated": True},
                ]
            },
            "files: a.txt, b.pdf (cut), c.md (left out)",
        ),
    ],
)
def test_meta_line_wording(values, line):
    assert meta_line(reply(**values)) == line


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),  # complete
        ({"status": "streaming"}, None),
        ({"role": "user", "status": "error", "error": "x"}, None),
        ({"status": "incomplete", "error_kind": "stopped", "error": STOPPED_TEXT},
         ("stopped", "Stopped.", None)),
        ({"status": "incomplete", "error": STOPPED_TEXT}, ("stopped", "Stopped.", None)),
        ({"status": "error", "error_kind": "auth", "error": "OpenAI: Incorrect API key provided"},
         ("failed", "The API key was refused — an admin must fix the key.",
          "OpenAI: Incorrect API key provided")),
        ({"status": "incomplete", "error_kind": "timeout", "error": "OpenAI: read timeout"},
         ("failed", FAILURE_REASONS["timeout"], "OpenAI: read timeout")),
        ({"status": "interrupted", "error_kind": "interrupted", "error": "The server stopped"},
         ("failed", FAILURE_REASONS["interrupted"], "The server stopped")),
        ({"status": "error", "error": "something"}, ("failed", GENERAL_FAILURE, "something")),
    ],
)  # fmt: skip
def test_how_a_reply_ended_in_words_for_a_person(values, expected):
    end = ending(reply(**values))
    assert (end and (end.kind, end.reason, end.detail)) == expected


def test_every_provider_error_kind_has_words_for_a_person():
    from app.providers import errors

    kinds = {
        cls.kind
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ProviderError) and cls.kind != "error"
    }
    assert kinds and kinds <= set(FAILURE_REASONS)


def page_lines(client, project_id, conversation_id) -> list[str]:
    html = client.get(f"/projects/{project_id}?c={conversation_id}").get_data(as_text=True)
    return [unescape(s) for s in re.findall(r'<span class="msg-info">([^<]*)</span>', html)]


def test_page_stream_and_api_say_the_same(app, client, auth, owner, project_id, fake):
    fake.script("responses", DOWN, DOWN)  # falls back to OpenRouter before any text
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Refunds?", "stream": True},
        headers=owner.headers,
    )
    events, _ = parse_sse(resp.get_data(as_text=True))
    (done,) = [data for name, data in events if name == "done"]
    fake.script("responses", DOWN, DOWN)
    fake.script("chat", DOWN, DOWN)  # then nobody answers
    conversation_id = done["message"]["conversation_id"]
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Still there?", "stream": True, "conversation_id": conversation_id},
        headers=owner.headers,
    )
    events, _ = parse_sse(resp.get_data(as_text=True))
    (failed,) = [data for name, data in events if name == "error"]

    streamed = [done["message"]["meta"], failed["message"]["meta"]]
    fallback = r"\S+ · openrouter \(fallback\) · prompt v1 · \d+→\d+ tokens · \d+\.\d s"
    assert re.fullmatch(fallback, streamed[0]), streamed
    assert re.fullmatch(r"prompt v1 · \d+\.\d s · error", streamed[1]), streamed
    listed = client.get(
        f"/api/conversations/{conversation_id}/messages?html=1", headers=owner.headers
    ).get_json()["data"]
    assert [m["meta"] for m in listed if m["role"] == "assistant"] == streamed
    assert all("meta" not in m for m in listed if m["role"] == "user")
    auth.login()
    assert page_lines(client, project_id, conversation_id) == streamed
