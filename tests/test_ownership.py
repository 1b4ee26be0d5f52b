"""Another user's data is invisible: 404 on every route that names it.

The matrix is built from ``app.url_map``: every rule with an id of ours in it is called as a
second user and must answer 404; anonymously, with a valid CSRF token, exactly a redirect to
/login (pages) or 401 (API). A route whose arguments this file does not know fails the test, so
a new route cannot skip the check.
"""

from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Message
from tests.factories import (
    make_comparison,
    make_conversation,
    make_file,
    make_key,
    make_label,
    make_project,
    make_share_link,
    make_user,
)

SAFE = {"GET"}
JSON = ("/api/", "/v1/")  # bearer-token routes; /v1 takes no cookies at all
# A share link's public pages answer anyone with the link, by design: who may reach what
# there (a visitor's own conversations only) is tests/test_share.py's.
PUBLIC = "/s/"


@pytest.fixture
def owned(app):
    owner = make_user(app, email="owner@example.com")
    project_id = make_project(app, owner, name="Owner's bot", system_prompt="Be kind.")
    conversation_id = make_conversation(app, owner, project_id)
    file_id = make_file(app, owner, project_id, name="notes.txt")
    comparison_id = make_comparison(app, owner, project_id)
    label = make_label(app, owner, project_id, "staging", 1)
    key_id, _ = make_key(app, owner)
    link_id, _ = make_share_link(app, owner, project_id)
    with app.app_context():
        turn_id = db.session.scalar(
            select(Message.id).where(
                Message.conversation_id == conversation_id, Message.role == "assistant"
            )
        )
    return {
        "turn_id": turn_id,
        "message_id": turn_id,  # the owner's reply (feedback)
        "project_id": project_id,
        "version": 1,
        "conversation_id": conversation_id,
        "file_id": file_id,
        "filename": "notes.txt",
        "comparison_id": comparison_id,
        "label": label,
        "key_id": key_id,
        "link_id": link_id,
        "name": "owners-bot",  # the project's model name on /v1 (its slug)
    }


def id_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not rule.arguments or rule.rule.startswith(PUBLIC):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule, method


def call(client, rule, method, values, **kw):
    url = rule.build(values, append_unknown=False)[1]
    body = {"json": {}} if rule.rule.startswith(JSON) and method != "GET" else {}
    return client.open(url, method=method, **body, **kw)


def test_every_route_with_an_id_is_404_for_another_user(app, client, owned):
    intruder = make_user(app, email="intruder@example.com")
    client.post("/login", data={"email": intruder.email, "password": intruder.password})
    checked = 0
    for rule, method in id_routes(app):
        unknown = rule.arguments - owned.keys()
        assert not unknown, f"{rule.rule}: teach test_ownership about {unknown}"
        variants = (
            [{"headers": intruder.headers}]
            if rule.rule.startswith("/v1/")
            else [{}, {"headers": intruder.headers}]
            if rule.rule.startswith("/api/")
            else [{}]
        )
        for kw in variants:
            resp = call(client, rule, method, owned, **kw)
            assert resp.status_code == 404, f"{method} {rule.rule} {kw} -> {resp.status_code}"
            checked += 1
    assert checked >= 10


def test_every_route_with_an_id_needs_login(app, client, owned):
    """Anonymous calls carry a valid CSRF token (the client reads it from /login), so the CSRF
    check cannot answer first: only ``login_required`` (pages) or the bearer rule (API) can."""
    checked = 0
    for rule, method in id_routes(app):
        resp = call(client, rule, method, owned)
        where = f"{method} {rule.rule} -> {resp.status_code}"
        if rule.rule.startswith("/v1/"):
            assert resp.status_code == 401, where
            assert resp.get_json()["error"]["code"] == "key_missing", where
        elif rule.rule.startswith("/api/"):
            assert resp.status_code == 401, where
            assert resp.get_json()["error"]["code"] == "unauthorized", where
        else:
            assert resp.status_code == 302, where
            assert urlsplit(resp.headers["Location"]).path == "/login", where
        checked += 1
    assert checked >= 10
