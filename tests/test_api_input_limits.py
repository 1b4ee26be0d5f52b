"""Input that reached the database and failed there (500s that schemathesis and probing found):
numbers beyond the database's integer, digits ``int`` cannot read, characters no text column
can store. Each is now refused at the edge, as a 404 or a 422 of the error family."""

import pytest

from app.extensions import db
from app.models import Project
from app.models.base import MAX_DB_INT
from tests.factories import make_conversation, make_project, make_user

TOO_BIG = MAX_DB_INT + 1


@pytest.fixture
def owner(app):
    return make_user(app, email="owner@example.com")


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="Be kind.")


def int_routes(app):
    """Every rule with an ``<int:…>`` in it, with each of its methods."""
    for rule in app.url_map.iter_rules():
        names = {name for name, conv in rule._converters.items() if conv.regex == r"\d+"}
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if names:
                yield rule, method, names


@pytest.mark.parametrize("number", [TOO_BIG, 10**20])
def test_ids_beyond_the_database_integer_are_404_on_every_method(app, client, owner, number):
    # Every method: Werkzeug would answer 405 for all but one if the converter merely refused.
    client.post("/login", data={"email": owner.email, "password": owner.password})
    checked = 0
    for rule, method, names in int_routes(app):
        values = dict.fromkeys(rule.arguments, "notes.txt") | dict.fromkeys(names, number)
        url = rule.build(values, append_unknown=False)[1]
        api = rule.rule.startswith("/api/")
        resp = client.open(url, method=method, **({"headers": owner.headers} if api else {}))
        assert resp.status_code == 404, f"{method} {url} -> {resp.status_code}"
        if api:
            assert resp.get_json()["error"]["code"] == "not_found"
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/projects/{p}/chat", {"message": "Hi", "conversation_id": TOO_BIG},
         "conversation_id"),
        ("/api/chat", {"message": "Hi", "projectId": 10**20}, "projectId"),
        ("/api/chat", {"message": "Hi", "projectId": "{p}", "conversationId": -TOO_BIG - 1},
         "conversationId"),
    ],
)  # fmt: skip
def test_json_ids_beyond_the_database_integer_are_422(client, owner, project_id, path, body, field):
    body = {k: project_id if v == "{p}" else v for k, v in body.items()}
    resp = client.post(path.format(p=project_id), json=body, headers=owner.headers)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=²", "limit"), ("before=١", "before"), (f"before={TOO_BIG}", "before"),
     (f"limit={10**20}", "limit")],
)  # fmt: skip
def test_message_paging_numbers_are_ascii_and_fit(app, client, owner, project_id, query, field):
    conversation_id = make_conversation(app, owner, project_id)
    url = f"/api/conversations/{conversation_id}/messages?{query}"
    resp = client.get(url, headers=owner.headers)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]


@pytest.mark.parametrize("query", ["from=²&to=1", f"from=1&to={TOO_BIG}", "from=1&to=١"])
def test_diff_version_numbers_are_ascii_and_fit(client, owner, project_id, query):
    resp = client.get(f"/api/projects/{project_id}/prompts/diff?{query}", headers=owner.headers)
    assert resp.status_code == 422


@pytest.mark.parametrize("c", ["²", str(10**20)])
def test_chat_page_ignores_a_conversation_number_it_cannot_read(client, owner, project_id, c):
    client.post("/login", data={"email": owner.email, "password": owner.password})
    assert client.get(f"/projects/{project_id}?c={c}").status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "a\\u0000b"}',  # PostgreSQL text refuses NUL
        '{"name": "a\\ud800b"}',  # a lone surrogate cannot be encoded as UTF-8
        '{"name": "ok", "description": "x\\udfff"}',
    ],
)
def test_characters_no_database_can_store_are_422(app, client, owner, raw):
    resp = client.post(
        "/api/projects", data=raw, content_type="application/json", headers=owner.headers
    )
    assert resp.status_code == 422
    assert resp.get_json()["error"]["fields"]
    with app.app_context():
        assert db.session.query(Project).count() == 0
