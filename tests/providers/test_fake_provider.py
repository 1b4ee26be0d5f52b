"""The fake provider server speaks the wire formats of docs/providers.md (checked with plain
httpx, not with our adapters), and it can be scripted and read over HTTP from another process."""

from __future__ import annotations

import json

import httpx
import pytest

from tools.fake_provider import Scenario

OPENAI_AUTH = {"Authorization": "Bearer test-openai-key"}
OPENROUTER_AUTH = {"Authorization": "Bearer test-openrouter-key"}
RESPONSES_BODY = {"model": "gpt-4o-mini", "input": [{"role": "user", "content": "hi"}]}
CHAT_BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def http(fake_provider):
    with httpx.Client(base_url=fake_provider.url, trust_env=False, timeout=5) as client:
        yield client


def sse_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.split("\n\n") if block.strip()]


def test_openai_stream_event_order_and_framing(http):
    response = http.post("/v1/responses", json={**RESPONSES_BODY, "stream": True},
                         headers=OPENAI_AUTH)  # fmt: skip
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"].startswith("req_")
    blocks = sse_blocks(response.text)
    events = []
    for block in blocks:
        assert block[0].startswith("event: ") and block[1].startswith("data: ")
        data = json.loads(block[1].removeprefix("data: "))
        assert data["type"] == block[0].removeprefix("event: ")
        events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "[DONE]" not in response.text
    assert all("obfuscation" in e for e in events if e["type"].endswith(".delta"))  # default on
    completed = events[-1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] == 5
    assert completed["model"] == "gpt-4o-mini-2024-07-18"


def test_openai_error_bodies_have_all_four_keys(http, fake_provider):
    fake_provider.script("responses", Scenario(status=429, retry_after_ms=20, should_retry=True))
    response = http.post("/v1/responses", json=RESPONSES_BODY, headers=OPENAI_AUTH)
    assert response.status_code == 429
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.headers["retry-after-ms"] == "20"
    assert response.headers["x-should-retry"] == "true"
    assert response.headers["x-request-id"]


def test_openai_nested_inband_error_then_response_failed(http, fake_provider):
    fake_provider.script("responses", Scenario(inband_error=True, error="insufficient_quota"))
    response = http.post("/v1/responses", json={**RESPONSES_BODY, "stream": True},
                         headers=OPENAI_AUTH)  # fmt: skip
    events = [json.loads(b[1][6:]) for b in sse_blocks(response.text)]
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert events[2]["error"]["code"] == "insufficient_quota"
    assert events[3]["response"]["error"]["code"] == "insufficient_quota"


def test_openai_rejects_what_the_real_api_rejects(http):
    response = http.post(
        "/v1/responses", json={**RESPONSES_BODY, "max_output_tokens": 8}, headers=OPENAI_AUTH
    )
    assert (
        response.status_code == 400 and "max_output_tokens" in response.json()["error"]["message"]
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "You didn't provide an API key"),
        ({"Authorization": "Bearer sk-nope-12345"}, "Incorrect API key provided: sk-***2345"),
    ],
)
def test_openai_requires_the_key(http, headers, message):
    response = http.post("/v1/responses", json=RESPONSES_BODY, headers=headers)
    assert response.status_code == 401
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "No cookie auth credentials found"),
        ({"Authorization": "Bearer sk-or-wrong"}, "User not found."),
    ],
)
def test_openrouter_requires_the_key(http, headers, message):
    response = http.post("/api/v1/chat/completions", json=CHAT_BODY, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": 401, "message": message}}


def test_openrouter_stream_framing(http, fake_provider):
    fake_provider.script("chat", Scenario(ttft_ms=60))
    response = http.post("/api/v1/chat/completions", json={**CHAT_BODY, "stream": True},
                         headers=OPENROUTER_AUTH)  # fmt: skip
    assert response.headers["x-generation-id"].startswith("gen-")
    blocks = sse_blocks(response.text)
    assert blocks[0] == [": OPENROUTER PROCESSING"]
    data = [b[0].removeprefix("data: ") for b in blocks if b[0].startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert not any(line.startswith("event:") for b in blocks for line in b)


def test_openrouter_models_need_no_auth(http):
    response = http.get("/api/v1/models")
    assert response.status_code == 200
    assert response.json()["data"][0]["id"] == "openai/gpt-4o-mini"


def test_files_upload_get_content_delete(http, fake_provider):
    upload = http.post(
        "/v1/files",
        headers=OPENAI_AUTH,
        data={"purpose": "user_data"},
        files={"file": ("notes.txt", b"hello file", "text/plain")},
    )
    assert upload.status_code == 200
    created = upload.json()
    assert created["id"].startswith("file-") and created["status"] == "processed"
    assert (created["filename"], created["bytes"], created["purpose"]) == (
        "notes.txt",
        10,
        "user_data",
    )
    (call,) = fake_provider.calls("files")
    assert call.form == {"purpose": "user_data"}
    assert call.files["file"]["filename"] == "notes.txt"
    file_url = f"/v1/files/{created['id']}"
    assert http.get(file_url, headers=OPENAI_AUTH).json() == created
    assert http.get(file_url + "/content", headers=OPENAI_AUTH).content == b"hello file"
    deleted = http.delete(file_url, headers=OPENAI_AUTH).json()
    assert deleted == {"id": created["id"], "object": "file", "deleted": True}
    missing = http.get(file_url, headers=OPENAI_AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"No such File object: {created['id']}"


def test_files_scripted_failure(http, fake_provider):
    fake_provider.script("files", Scenario(status=500))
    response = http.post("/v1/files", headers=OPENAI_AUTH, data={"purpose": "user_data"},
                         files={"file": ("a.txt", b"a")})  # fmt: skip
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


def test_control_endpoints_script_and_read(http, fake_provider):
    scripted = http.post(
        "/_control/script",
        json={"endpoint": "chat", "scenarios": [{"status": 503, "raw": "from afar"}]},
    )
    assert scripted.json() == {"queued": 1}
    response = http.post("/api/v1/chat/completions", json=CHAT_BODY, headers=OPENROUTER_AUTH)
    assert response.status_code == 503
    assert response.json()["error"]["metadata"]["raw"] == "from afar"
    recorded = http.get("/_control/requests").json()
    assert [r["endpoint"] for r in recorded["data"]] == ["chat"]
    assert recorded["data"][0]["json"] == CHAT_BODY
    assert (
        http.post(
            "/_control/script", json={"endpoint": "chat", "scenarios": [{"x": 1}]}
        ).status_code
        == 400
    )
    http.post("/_control/reset")
    assert fake_provider.requests == []
