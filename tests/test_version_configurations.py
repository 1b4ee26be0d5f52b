"""Issue 30's "done when", end to end through the JSON API on both databases: a version with
``{{ customer_name }}`` and a JSON-schema output, labelled ``staging``, answers a pinned chat
that asks for the label and passes ``variables``; the provider receives the rendered text and
the format, the reply is checked against the schema, and the values used are stored with it.
The parts are tested one by one in tests/test_templates.py, test_output_format.py and
test_labels.py."""

from __future__ import annotations

import json

import pytest

from tests.factories import make_project
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False)

SCHEMA = {
    "type": "object",
    "properties": {"greeting": {"type": "string"}, "priority": {"type": "integer"}},
    "required": ["greeting", "priority"],
    "additionalProperties": False,
}


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You answer briefly.")


def test_a_labelled_template_version_with_a_schema_answers_a_pinned_api_chat(
    client, owner, project_id, fake
):
    saved = client.post(
        f"/api/projects/{project_id}/prompts",
        json={
            "content": "You answer {{ customer_name }}{% if vip %}, a VIP{% endif %}, in JSON.",
            "variables": [
                {"name": "customer_name", "type": "string", "required": True},
                {"name": "vip", "type": "boolean", "default": False, "required": False},
            ],
            "output_format": "json_schema",
            "output_schema": SCHEMA,
            "activate": False,
        },
        headers=owner.headers,
    )
    assert saved.status_code == 201, saved.get_json()
    number = saved.get_json()["version"]
    labelled = client.post(
        f"/api/projects/{project_id}/prompts/labels",
        json={"name": "staging", "version": number},
        headers=owner.headers,
    )
    assert labelled.status_code == 201, labelled.get_json()

    fake.script(
        "responses",
        Scenario(text=json.dumps({"greeting": "Hello Ada", "priority": 1})),
        Scenario(text=json.dumps({"greeting": "Hello Bo"})),  # misses "priority"
    )
    chat_url = f"/api/projects/{project_id}/chat"
    first = client.post(
        chat_url,
        json={"message": "Hi", "label": "staging", "variables": {"customer_name": "Ada"}},
        headers=owner.headers,
    )
    assert first.status_code == 200, first.get_json()
    sent = fake.calls("responses")[-1].json
    assert sent["instructions"] == "You answer Ada, in JSON."
    assert sent["text"]["format"]["type"] == "json_schema"
    assert sent["text"]["format"]["schema"] == SCHEMA
    reply = first.get_json()["message"]
    assert reply["prompt_version"] == number
    assert reply["variables"] == {"customer_name": "Ada", "vip": False}
    assert (reply["format_valid"], reply["format_error"]) == (True, None)

    second = client.post(
        chat_url,
        json={
            "message": "Again",
            "conversation_id": first.get_json()["conversation_id"],
            "variables": {"vip": True},  # the conversation keeps customer_name
        },
        headers=owner.headers,
    )
    assert second.status_code == 200, second.get_json()
    assert fake.calls("responses")[-1].json["instructions"] == "You answer Ada, a VIP, in JSON."
    reply = second.get_json()["message"]
    assert reply["prompt_version"] == number and reply["format_valid"] is False
    assert "priority" in reply["format_error"]

    missing = client.post(
        chat_url, json={"message": "Hi", "label": "staging"}, headers=owner.headers
    )
    assert missing.status_code == 422
    assert "variables.customer_name" in missing.get_json()["error"]["fields"]
