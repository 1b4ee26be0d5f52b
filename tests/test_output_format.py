"""Output format per version (docs/formats.md): saved and validated, sent as OpenAI's
``text.format`` and OpenRouter's ``response_format`` over real HTTP to the fake provider,
retried without the field when a provider refuses it, replies checked, marked and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from tests.factories import make_project, make_user
from tests.sse import parse_sse
from tools.fake_provider import Scenario

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["answer", "score"],
    "additionalProperties": False,
}
GOOD = json.dumps({"answer": "42", "score": 7})


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="Answer in JSON.")


def save(client, owner, project_id, **body):
    body.setdefault("content", "Answer in JSON.")
    return client.post(f"/api/projects/{project_id}/prompts", json=body, headers=owner.headers)


def chat(client, owner, project_id, message="Question?", **body):
    return client.post(
        f"/api/projects/{project_id}/chat", json={"message": message, **body}, headers=owner.headers
    )


def metrics_row(client, owner, project_id, version):
    data = client.get(
        f"/api/projects/{project_id}/prompts/metrics?window=all", headers=owner.headers
    ).get_json()["data"]
    return next(row for row in data if row["version"] == version)


# --- saving ---------------------------------------------------------------------------------


def test_a_json_schema_version_is_saved_diffed_and_unchanged_when_saved_again(
    client, owner, project_id
):
    resp = save(client, owner, project_id, output_format="json_schema", output_schema=SCHEMA)
    assert resp.status_code == 201, resp.get_json()
    version = resp.get_json()
    assert (version["version"], version["output_format"]) == (2, "json_schema")
    assert version["output_schema"] == SCHEMA
    # Settings left out keep the base version's: the same text and format store nothing.
    again = save(client, owner, project_id)
    assert again.status_code == 200 and again.get_json()["created"] is False
    diff = client.get(
        f"/api/projects/{project_id}/prompts/diff?from=1&to=2", headers=owner.headers
    ).get_json()
    changed = {c["name"]: (c["from"], c["to"]) for c in diff["settings"]}
    assert changed == {
        "output_format": ("text", "json_schema"),
        "output_schema": (None, SCHEMA),
        "labels": ([], ["production"]),  # saved live: production moved to v2
    }
    back = save(client, owner, project_id, output_format="text")
    assert back.status_code == 201
    assert (back.get_json()["output_format"], back.get_json()["output_schema"]) == ("text", None)


def _deep(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"output_schema": {"type": "nonsense"}}, "Not a valid JSON Schema"),
        ({"output_schema": {"type": "object", "required": "answer"}}, "Not a valid JSON Schema"),
        ({"output_schema": {"minLength": -1}}, "Not a valid JSON Schema"),
        (
            {"output_schema": {"description": "x" * 33_000, "type": "object"}},
            "at most 32 KB",
        ),
        ({"output_schema": _deep(20)}, "Nest at most 32"),  # 41 levels (the edge allows 64)
        ({}, "Give the JSON Schema"),
        ({"output_schema": {"$ref": "https://example.com/s.json"}}, "Only references inside"),
        ({"output_schema": {"properties": {"a": {"$ref": "#/$defs/gone"}}}}, "leads nowhere"),
    ],
    ids=[
        "bad-type",
        "required-not-array",
        "negative-length",
        "too-large",
        "too-deep",
        "missing",
        "remote-ref",
        "dangling-ref",
    ],
)
def test_a_bad_schema_is_a_422_on_output_schema(client, owner, project_id, body, words):
    resp = save(client, owner, project_id, output_format="json_schema", **body)
    assert resp.status_code == 422
    assert words in resp.get_json()["error"]["fields"]["output_schema"]
    versions = client.get(f"/api/projects/{project_id}/prompts", headers=owner.headers)
    assert len(versions.get_json()["data"]) == 1  # nothing stored


def test_an_unknown_format_and_a_schema_that_is_not_an_object_are_refused(
    client, owner, project_id
):
    assert save(client, owner, project_id, output_format="yaml").status_code == 422
    resp = save(client, owner, project_id, output_format="json_schema", output_schema=[1])
    assert resp.status_code == 422
    assert "A schema is a JSON object." in resp.get_json()["error"]["fields"]["output_schema"]


def test_another_users_project_is_404_before_the_schema_is_read(app, client, project_id):
    intruder = make_user(app, email="eve@example.com")
    resp = save(
        client, intruder, project_id, output_format="json_schema", output_schema={"type": 1}
    )
    assert resp.status_code == 404


def test_the_page_saves_a_schema_and_shows_a_bad_one_as_a_form_error(
    app, client, auth, owner, project_id
):
    auth.login(owner.email, owner.password)
    page = f"/projects/{project_id}/prompts"
    form = {
        "content": "Answer in JSON.",
        "model": "gpt-4o-mini",
        "max_output_tokens": "512",
        "output_format": "json_schema",
        "save_live": "y",
    }
    bad = client.post(page, data={**form, "output_schema": '{"type": "object",'})
    assert bad.status_code == 422
    assert "This is not JSON" in bad.get_data(as_text=True)
    ok = client.post(page, data={**form, "output_schema": json.dumps(SCHEMA)})
    assert ok.status_code == 302
    shown = client.get(f"{page}/2").get_data(as_text=True)
    assert "JSON matching a schema" in shown and "additionalProperties" in shown


# --- the wire, the check, the metrics --------------------------------------------------------


@pytest.mark.use_fake(openrouter=False)
def test_a_schema_version_reaches_openai_as_text_format_and_its_replies_are_checked(
    client, owner, project_id, fake
):
    save(client, owner, project_id, output_format="json_schema", output_schema=SCHEMA)
    fake.script(
        "responses",
        Scenario(text=GOOD),
        Scenario(text='{"answer": "no score"}'),
        Scenario(text="Sure! Here is the JSON you asked for."),
    )

    first = chat(client, owner, project_id)
    assert first.status_code == 200, first.get_json()
    sent = fake.calls("responses")[0].json
    assert sent["text"] == {
        "format": {"type": "json_schema", "name": "reply", "schema": SCHEMA, "strict": True}
    }
    assert "response_format" not in sent
    message = first.get_json()["message"]
    assert (message["format_valid"], message["format_error"]) == (True, None)

    second = chat(client, owner, project_id).get_json()["message"]
    assert second["format_valid"] is False
    assert second["format_error"].startswith("Does not match the schema at the top level")
    assert "'score' is a required property" in second["format_error"]
    third = chat(client, owner, project_id).get_json()["message"]
    assert third["format_valid"] is False and third["format_error"].startswith("Not JSON")

    row = metrics_row(client, owner, project_id, 2)
    assert (row["replies"], row["format_checked"], row["format_invalid"]) == (3, 3, 2)
    assert row["format_invalid_rate"] == pytest.approx(2 / 3)


@pytest.mark.use_fake(openrouter=False)
def test_a_text_version_sends_no_format_and_is_not_checked(client, owner, project_id, fake):
    reply = chat(client, owner, project_id).get_json()["message"]
    assert "text" not in fake.calls("responses")[0].json
    assert reply["format_valid"] is None
    row = metrics_row(client, owner, project_id, 1)
    assert (row["format_checked"], row["format_invalid"], row["format_invalid_rate"]) == (
        0,
        0,
        None,
    )


@pytest.mark.use_fake(openrouter=False)
def test_a_json_object_version_wants_an_object(client, owner, project_id, fake):
    save(client, owner, project_id, output_format="json_object")
    fake.script("responses", Scenario(text="[1, 2]"))
    reply = chat(client, owner, project_id).get_json()["message"]
    assert fake.calls("responses")[0].json["text"] == {"format": {"type": "json_object"}}
    assert (reply["format_valid"], reply["format_error"]) == (False, "JSON, but not an object.")


@pytest.mark.use_fake(openai=False)
def test_openrouter_gets_response_format_and_require_parameters(client, owner, project_id, fake):
    save(client, owner, project_id, output_format="json_schema", output_schema=SCHEMA)
    fake.script("chat", Scenario(text=GOOD))
    reply = chat(client, owner, project_id).get_json()["message"]
    sent = fake.calls("chat")[0].json
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "strict": True, "schema": SCHEMA},
    }
    assert sent["provider"] == {"require_parameters": True}
    assert "text" not in sent
    assert reply["provider"] == "openrouter" and reply["format_valid"] is True


@pytest.mark.use_fake(openrouter=False)
def test_a_streamed_reply_is_checked_and_shown_formatted(client, owner, project_id, fake):
    save(client, owner, project_id, output_format="json_schema", output_schema=SCHEMA)
    fake.script("responses", Scenario(deltas=['{"answer":', ' "42", "score": 7}']))
    resp = chat(client, owner, project_id, stream=True)
    assert resp.status_code == 200
    events, _ = parse_sse(resp.get_data(as_text=True))
    done = [data for name, data in events if name == "done"]
    assert done[-1]["message"]["format_valid"] is True
    conversation_id = client.get(
        f"/api/projects/{project_id}/conversations", headers=owner.headers
    ).get_json()["data"][0]["id"]
    messages = client.get(
        f"/api/conversations/{conversation_id}/messages?html=1", headers=owner.headers
    ).get_json()["data"]
    reply = messages[-1]
    assert reply["format_valid"] is True and "valid JSON" in reply["meta"]
    # Pretty-printed (one key per line) and highlighted as JSON, not a Markdown paragraph.
    assert '<pre><code class="language-json">' in reply["html"]
    assert '{</span>\n<span class="hl-w">  </span><span class="hl-nt">"answer"' in reply["html"]


@pytest.mark.use_fake(openrouter=False)
@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_format_is_retried_once_without_it_and_still_checked(
    client, owner, project_id, fake, stream
):
    save(client, owner, project_id, output_format="json_schema", output_schema=SCHEMA)
    fake.script("responses", Scenario(reject_format=400), Scenario(text=GOOD))
    resp = chat(client, owner, project_id, stream=stream)
    assert resp.status_code == 200
    resp.get_data()  # to the end of the stream: the reply is stored
    first, second = fake.calls("responses")
    assert first.status == 400 and first.json["text"]["format"]["type"] == "json_schema"
    assert "text" not in second.json
    words, schema = second.json["instructions"].split("matches this JSON Schema:\n")
    assert words.startswith("Answer in JSON.\n\nAnswer with one JSON value only")
    assert json.loads(schema) == SCHEMA
    row = metrics_row(client, owner, project_id, 2)
    assert (row["format_checked"], row["format_invalid"]) == (1, 0)


@pytest.mark.use_fake(openai=False)
def test_openrouter_without_an_endpoint_for_the_format_is_retried_without_it(
    client, owner, project_id, fake
):
    save(client, owner, project_id, output_format="json_object")
    fake.script("chat", Scenario(reject_format=404), Scenario(text="not json"))
    reply = chat(client, owner, project_id).get_json()["message"]
    first, second = fake.calls("chat")
    assert first.status == 404 and "response_format" in first.json
    assert "response_format" not in second.json and "provider" not in second.json
    assert "one JSON object only" in second.json["messages"][0]["content"]
    assert reply["format_valid"] is False  # checked locally all the same


@pytest.mark.use_fake(openrouter=False)
def test_a_second_refusal_is_not_retried_again(client, owner, project_id, fake):
    save(client, owner, project_id, output_format="json_object")
    fake.script("responses", Scenario(reject_format=400), Scenario(status=400))
    resp = chat(client, owner, project_id)
    assert resp.status_code == 502
    assert len(fake.calls("responses")) == 2


# --- against OpenAI's own description ---------------------------------------------------------

OPENAI_TEXT = json.loads((Path(__file__).parent / "specs" / "openai_text_format.json").read_text())


def openai_text_problems(text: object) -> list[str]:
    """What OpenAI's OpenAPI description (``ResponseTextParam``) finds wrong with ``text``."""
    schema = {"$ref": "#/$defs/ResponseTextParam", "$defs": OPENAI_TEXT["$defs"]}
    return [e.message for e in Draft202012Validator(schema).iter_errors(text)]


@pytest.mark.use_fake(openrouter=False)
@pytest.mark.parametrize("output_format", ["json_object", "json_schema"])
def test_what_reaches_openai_matches_its_openapi_description(
    client, owner, project_id, fake, output_format
):
    schema = SCHEMA if output_format == "json_schema" else None
    save(client, owner, project_id, output_format=output_format, output_schema=schema)
    fake.script("responses", Scenario(text=GOOD))
    assert chat(client, owner, project_id).status_code == 200
    assert openai_text_problems(fake.calls("responses")[0].json["text"]) == []


def test_the_description_extract_refuses_the_chat_completions_nesting():
    """The check above can fail: OpenRouter's (Chat Completions) shape is not OpenAI's."""
    nested = {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA}}
    assert openai_text_problems({"format": nested}) != []
    assert openai_text_problems({"format": {"type": "yaml"}}) != []
