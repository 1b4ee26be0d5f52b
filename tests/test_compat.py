"""The OpenAI-compatible endpoints (``/v1``) with a client no one here wrote: the official
``openai`` package against the app on a real loopback server, the provider being the fake
over real HTTP. Raw answers are checked against OpenAI's own schemas
(``tests/specs/openai_compat.json``, from OpenAI's published OpenAPI description)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import func, select, update

from app.extensions import db
from app.models import ApiKey, Conversation, Message
from app.models.base import utcnow
from tests.factories import make_label, make_project, make_user, make_version
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False)

SPEC = json.loads((Path(__file__).parent / "specs" / "openai_compat.json").read_text())


def conforms(name: str, value) -> None:
    """``value`` is valid against OpenAI's schema ``name`` (every error listed if not)."""
    validator = Draft202012Validator({**SPEC, "$ref": f"#/$defs/{name}"})
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]
    assert not errors, f"{name}: {errors}\n{json.dumps(value)[:2000]}"


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Support Bot", system_prompt="You are Support Bot.")


def new_key(client, owner, **body) -> dict:
    resp = client.post("/api/keys", json={"name": "widget", **body}, headers=owner.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


@pytest.fixture
def key(client, owner, project_id) -> str:
    return new_key(client, owner)["key"]


def sdk(live_server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key=key, max_retries=0, timeout=20)


def sent_instructions(fake) -> list[str]:
    return [r.json["instructions"] for r in fake.calls("responses")]


# --- the official client -------------------------------------------------------------------------


def test_the_sdk_streams_the_projects_production_answer_and_it_is_stored(
    app, live_server, key, project_id, fake
):
    fake.script("responses", Scenario(deltas=["Hello", " from", " production."]))
    stream = sdk(live_server, key).chat.completions.create(
        model="support-bot",
        messages=[
            {"role": "user", "content": "Hi, I am Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": "What can you do?"},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from production."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1

    # The provider got the production version's instructions and the caller's history.
    (call,) = fake.calls("responses")
    assert call.json["instructions"] == "You are Support Bot."
    assert [m["content"] for m in call.json["input"]][-1] == "What can you do?"
    with app.app_context():
        convo = db.session.scalar(select(Conversation).where(Conversation.source == "api"))
        assert convo.project_id == project_id and convo.api_key_id is not None
        rows = db.session.scalars(
            select(Message).where(Message.conversation_id == convo.id).order_by(Message.id)
        ).all()
        assert [(m.role, m.content) for m in rows] == [
            ("user", "Hi, I am Ada."),
            ("assistant", "Hello Ada."),
            ("user", "What can you do?"),
            ("assistant", "Hello from production."),
        ]
        assert rows[-1].status == "complete" and rows[-1].prompt_version is not None


def test_the_sdk_without_streaming(live_server, key, project_id, fake):
    fake.script("responses", Scenario(text="One answer."))
    completion = sdk(live_server, key).chat.completions.create(
        model="support-bot", messages=[{"role": "user", "content": "Hello?"}]
    )
    assert completion.choices[0].message.content == "One answer."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.model == "support-bot"


def test_models_list_the_callers_projects_and_labels(app, client, owner, live_server, project_id):
    make_label(app, owner, project_id, "staging", 1)
    other = make_project(app, owner, name="Support Bot")  # same name: another slug
    key = new_key(client, owner)["key"]
    ids = [m.id for m in sdk(live_server, key).models.list()]
    assert ids == ["support-bot", "support-bot@production", "support-bot@staging", "support-bot-2"]
    assert sdk(live_server, key).models.retrieve("support-bot@v1").id == "support-bot@v1"
    # A project key sees its own project only.
    project_key = new_key(client, owner, project_id=other)["key"]
    assert [m.id for m in sdk(live_server, project_key).models.list()] == ["support-bot-2"]
    with pytest.raises(openai.NotFoundError):
        sdk(live_server, project_key).chat.completions.create(
            model="support-bot", messages=[{"role": "user", "content": "Hi"}]
        )


def test_a_label_or_a_version_number_pins_the_version(
    app, owner, live_server, key, project_id, fake
):
    v2 = make_version(app, owner, project_id, "You are the second version.")
    make_label(app, owner, project_id, "staging", v2)
    fake.script("responses", Scenario(text="a"), Scenario(text="b"), Scenario(text="c"))
    client = sdk(live_server, key)
    for model in ("support-bot@staging", "support-bot@v1", "support-bot"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
    assert sent_instructions(fake) == [
        "You are the second version.",  # the label
        "You are Support Bot.",  # v1, pinned
        "You are the second version.",  # production (make_version made v2 production)
    ]


def test_a_provider_failure_mid_stream_raises_in_the_sdk(live_server, key, project_id, fake):
    fake.script("responses", Scenario(deltas=["Part", "ial"], fail_after=1))
    stream = sdk(live_server, key).chat.completions.create(
        model="support-bot", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    assert "failed" in str(caught.value).lower() or caught.value.body is not None


# --- keys: revoked, expired, scoped ------------------------------------------------------------


def test_a_revoked_key_is_refused_at_its_next_request(client, owner, live_server, project_id):
    created = new_key(client, owner)
    api = sdk(live_server, created["key"])
    assert [m.id for m in api.models.list()][0] == "support-bot"
    revoked = client.delete(f"/api/keys/{created['api_key']['id']}", headers=owner.headers)
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    with pytest.raises(openai.AuthenticationError) as caught:
        api.models.list()
    assert caught.value.code == "key_revoked"
    listed = client.get("/api/keys", headers=owner.headers).get_json()["data"]
    assert listed[0]["revoked_at"] and "key" not in listed[0]


def test_expired_malformed_and_unknown_keys_are_401_in_openais_shape(
    app, client, owner, live_server, project_id
):
    created = new_key(client, owner, expires_in_days=1)
    with app.app_context():
        db.session.execute(update(ApiKey).values(expires_at=utcnow()))
        db.session.commit()
    for token, code in [
        (created["key"], "key_expired"),
        (created["key"][:-2] + "xx", "key_invalid"),
        ("phk_nothing", "key_invalid"),
        ("not-a-key", "token_invalid"),
    ]:
        resp = httpx.get(f"{live_server}/v1/models", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, token
        conforms("ErrorResponse", resp.json())
        assert resp.json()["error"]["code"] == code
    resp = httpx.get(f"{live_server}/v1/models")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "key_missing"


def test_scopes(client, owner, project_id):
    def call(key, method, url, **kw):
        return client.open(url, method=method, headers={"Authorization": f"Bearer {key}"}, **kw)

    chat = new_key(client, owner)["key"]
    read = new_key(client, owner, scope="read")["key"]
    manage = new_key(client, owner, scope="manage")["key"]
    assert call(chat, "GET", "/api/projects").status_code == 403
    assert call(chat, "GET", "/api/projects").get_json()["error"]["code"] == "insufficient_scope"
    assert call(read, "GET", "/api/projects").status_code == 200
    assert call(read, "POST", "/api/projects", json={"name": "x"}).status_code == 403
    assert call(manage, "POST", "/api/projects", json={"name": "x"}).status_code == 201
    # No key manages the account's credentials.
    assert call(manage, "POST", "/api/keys", json={"name": "more"}).status_code == 403
    assert call(manage, "POST", "/api/auth/logout-all").status_code == 403
    # A project key can only chat.
    resp = client.post(
        "/api/keys",
        json={"name": "p", "project_id": project_id, "scope": "read"},
        headers=owner.headers,
    )
    assert resp.status_code == 422 and "scope" in resp.get_json()["error"]["fields"]
    # Keys are never valid for pages.
    assert client.get("/keys", headers={"Authorization": f"Bearer {manage}"}).status_code == 302


# --- bad input -----------------------------------------------------------------------------------


def test_another_users_project_is_model_not_found(app, client, live_server, project_id):
    intruder = make_user(app, email="eve@example.com")
    make_project(app, intruder, name="Eve bot")
    key = new_key(client, intruder)["key"]
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(live_server, key).chat.completions.create(
            model="support-bot", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.code == "model_not_found"
    conforms("ErrorResponse", caught.value.response.json())
    assert "support-bot" not in [m.id for m in sdk(live_server, key).models.list()]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"top_p": 0.5}, "top_p"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"store": False}, "store"),
        ({"temperature": 3}, "temperature"),
        ({"model": "nope"}, None),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "last"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages.0.content.0",
        ),
    ],
)
def test_unsupported_or_bad_parameters_are_named(live_server, key, project_id, fake, extra, param):
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "Hi"}], **extra}
    resp = httpx.post(
        f"{live_server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    conforms("ErrorResponse", resp.json())
    if param is None:
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    else:
        assert resp.status_code == 400, resp.json()
        assert resp.json()["error"]["param"] == param
    assert fake.calls("responses") == []  # nothing was sent to a model


def test_an_oversized_body_is_413_in_openais_shape(app, live_server, key, project_id):
    limit = app.config["MAX_JSON_KB"] * 1024
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "x" * limit}]}
    resp = httpx.post(
        f"{live_server}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status_code == 413
    conforms("ErrorResponse", resp.json())


def test_system_messages_follow_the_projects_policy(app, live_server, key, project_id, fake):
    from app.models import Project

    fake.script("responses", Scenario(text="a"), Scenario(text="b"))
    client = sdk(live_server, key)
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
    ]
    client.chat.completions.create(model="support-bot", messages=messages)
    with app.app_context():
        db.session.execute(update(Project).values(system_policy="replace"))
        db.session.commit()
    client.chat.completions.create(model="support-bot", messages=messages)
    assert sent_instructions(fake) == [
        "You are Support Bot.\n\nAnswer in French.",
        "Answer in French.",
    ]
    with app.app_context():
        db.session.execute(update(Project).values(system_policy="refuse"))
        db.session.commit()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="support-bot", messages=messages)
    assert caught.value.code == "system_message_refused"


# --- the official shapes ------------------------------------------------------------------------


def test_raw_answers_match_openais_schemas(live_server, key, project_id, fake):
    fake.script("responses", Scenario(text="Plain."), Scenario(deltas=["A", "B"]))
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "Hi"}]}
    plain = httpx.post(f"{live_server}/v1/chat/completions", json=body, headers=headers)
    assert plain.status_code == 200
    conforms("CreateChatCompletionResponse", plain.json())
    streamed = httpx.post(
        f"{live_server}/v1/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
        headers=headers,
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    data = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    for item in data[:-1]:
        conforms("CreateChatCompletionStreamResponse", json.loads(item))
    models = httpx.get(f"{live_server}/v1/models", headers=headers)
    conforms("ListModelsResponse", models.json())


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.use_fake(openrouter=False, RATELIMIT_ENABLED=True, RATELIMIT_KEYS="100 per hour")
def test_a_keys_rate_and_budget_hold_and_others_are_unaffected(
    app, client, owner, live_server, project_id, fake
):
    slow = new_key(client, owner, rate_per_minute=2)["key"]
    other = new_key(client, owner)["key"]
    message = [{"role": "user", "content": "Hi"}]
    fake.script("responses", *[Scenario(text="fine") for _ in range(6)])
    for _ in range(2):
        sdk(live_server, slow).chat.completions.create(model="support-bot", messages=message)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(live_server, slow).chat.completions.create(model="support-bot", messages=message)
    assert int(caught.value.response.headers["Retry-After"]) > 0
    # The user's other key, and another user, go on.
    sdk(live_server, other).chat.completions.create(model="support-bot", messages=message)
    eve = make_user(app, email="eve@example.com")
    make_project(app, eve, name="Support Bot")
    eve_key = new_key(client, eve)["key"]
    sdk(live_server, eve_key).chat.completions.create(model="support-bot", messages=message)

    # A monthly token budget: the call that crosses it is answered, the next one refused.
    budget = new_key(client, owner, monthly_tokens=1)["key"]
    sdk(live_server, budget).chat.completions.create(model="support-bot", messages=message)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(live_server, budget).chat.completions.create(model="support-bot", messages=message)
    assert caught.value.code == "key_budget_exceeded"
    assert caught.value.body["type"] == "insufficient_quota"
    assert len(fake.calls("responses")) == 5


# --- the Responses API ---------------------------------------------------------------------------


def test_the_sdk_uses_the_responses_api_and_continues_a_response(
    app, live_server, key, project_id, fake
):
    fake.script("responses", Scenario(text="Hello Ada."), Scenario(deltas=["Orders ", "ship."]))
    client = sdk(live_server, key)
    first = client.responses.create(
        model="support-bot", input="Hi, I am Ada.", instructions="Be brief."
    )
    assert first.output_text == "Hello Ada." and first.status == "completed"
    assert first.usage.total_tokens > 0
    events = list(
        client.responses.create(
            model="support-bot",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Shipping?"}]}],
            previous_response_id=first.id,
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "Orders ship."
    )
    assert events[-1].response.output_text == "Orders ship."
    # The second call saw the first exchange, in the same stored conversation.
    second = fake.calls("responses")[1].json
    assert [m["content"] for m in second["input"]] == [
        "Hi, I am Ada.",
        "Hello Ada.",
        "Shipping?",
    ]
    assert second["instructions"] == "You are Support Bot."  # instructions are per call
    assert fake.calls("responses")[0].json["instructions"] == "You are Support Bot.\n\nBe brief."
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1


def test_a_response_of_someone_else_cannot_be_continued(
    app, client, live_server, key, project_id, fake
):
    fake.script("responses", Scenario(text="mine"))
    first = sdk(live_server, key).responses.create(model="support-bot", input="Hi")
    eve = make_user(app, email="eve@example.com")
    make_project(app, eve, name="Support Bot")  # her own support-bot
    eve_client = sdk(live_server, new_key(client, eve)["key"])
    for previous in (first.id, "resp_999999", "resp_x", "msg_1"):
        with pytest.raises(openai.NotFoundError) as caught:
            eve_client.responses.create(
                model="support-bot", input="Tell me", previous_response_id=previous
            )
        assert caught.value.code == "response_not_found"
    assert len(fake.calls("responses")) == 1


def test_raw_responses_match_openais_schemas(live_server, key, project_id, fake):
    fake.script("responses", Scenario(text="Plain."), Scenario(deltas=["A", "B"]))
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "support-bot", "input": "Hi", "metadata": {"ticket": "7"}}
    plain = httpx.post(f"{live_server}/v1/responses", json=body, headers=headers)
    assert plain.status_code == 200
    conforms("Response", plain.json())
    streamed = httpx.post(f"{live_server}/v1/responses", json={**body, "stream": True},
                          headers=headers)  # fmt: skip
    events = [line for line in streamed.text.splitlines() if line.startswith("event: ")]
    data = [
        json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: ")
    ]
    assert [e[7:] for e in events] == [d["type"] for d in data]
    names = {"response.created": "ResponseCreatedEvent",
             "response.in_progress": "ResponseInProgressEvent",
             "response.output_item.added": "ResponseOutputItemAddedEvent",
             "response.content_part.added": "ResponseContentPartAddedEvent",
             "response.output_text.delta": "ResponseTextDeltaEvent",
             "response.output_text.done": "ResponseTextDoneEvent",
             "response.content_part.done": "ResponseContentPartDoneEvent",
             "response.output_item.done": "ResponseOutputItemDoneEvent",
             "response.completed": "ResponseCompletedEvent"}  # fmt: skip
    for item in data:
        conforms(names[item["type"]], item)  # the event's own schema: its errors named
        conforms("ResponseStreamEvent", item)
    fake.script("responses", Scenario(deltas=["Part", "ial"], fail_after=1))
    failed = httpx.post(f"{live_server}/v1/responses", json={**body, "stream": True},
                        headers=headers)  # fmt: skip
    last = json.loads([x for x in failed.text.splitlines() if x.startswith("data: ")][-1][6:])
    assert last["type"] == "response.failed" and last["response"]["status"] == "failed"
    conforms("ResponseFailedEvent", last)
    refused = httpx.post(f"{live_server}/v1/responses", json={**body, "tools": []},
                         headers=headers)  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tools"


def test_metrics_count_app_calls_apart_from_the_owners_chats(
    app, client, owner, live_server, key, project_id, fake
):
    fake.script("responses", Scenario(text="from an app"), Scenario(text="in the chat"))
    sdk(live_server, key).chat.completions.create(
        model="support-bot", messages=[{"role": "user", "content": "Hi"}]
    )
    chatted = client.post(
        f"/api/projects/{project_id}/chat", json={"message": "Hello"}, headers=owner.headers
    )
    assert chatted.status_code == 200
    url = f"/api/projects/{project_id}/prompts/metrics"

    def replies(source: str | None) -> int:
        query = f"?source={source}" if source else ""
        body = client.get(url + query, headers=owner.headers).get_json()
        assert body["source"] == (source or "all")
        return body["data"][0]["replies"]

    assert (replies(None), replies("all"), replies("chat"), replies("api")) == (2, 2, 1, 1)
    assert client.get(url + "?source=web", headers=owner.headers).status_code == 422
    client.post("/login", data={"email": owner.email, "password": owner.password})
    page = client.get(f"/projects/{project_id}/prompts?source=api").get_data(as_text=True)
    assert 'href="?window=7d&amp;source=api#metrics" aria-current="true">Apps (API)' in page


# --- the documentation's own examples ---------------------------------------------------------


def doc_example(language: str) -> str:
    """The first ``language`` code block of docs/openai-compatible.md, pointed at ``base``."""
    text = (Path(__file__).parents[1] / "docs" / "openai-compatible.md").read_text()
    start = text.index(f"```{language}\n") + len(language) + 4
    return text[start : text.index("```", start)]


def test_the_documented_curl_example_streams(live_server, key, project_id, fake):
    import shutil
    import subprocess

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    fake.script("responses", Scenario(deltas=["Hi ", "there."]))
    script = doc_example("sh").replace("https://prompthub.example.com", live_server)
    done = subprocess.run(  # the shell runs the block as written, with the key in its env
        ["/bin/sh", "-c", script.replace("curl ", f"{curl} -sS --no-buffer ", 1)],
        env={"PROMPTHUB_KEY": key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    chunks = [json.loads(x[6:]) for x in done.stdout.splitlines() if x.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hi there."
    assert done.stdout.rstrip().endswith("data: [DONE]")


def test_the_documented_python_example_runs(live_server, key, project_id, fake, capsys):
    fake.script("responses", Scenario(deltas=["Your order ", "is on its way."]))
    code = doc_example("python").replace("https://prompthub.example.com", live_server)
    exec(compile(code.replace('api_key="phk_…"', f'api_key="{key}"'), "docs", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out == "Your order is on its way."
