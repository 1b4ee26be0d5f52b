"""schemathesis over the OpenAPI document, against the app (WSGI, in process).

One test per documented operation, each on a fresh app and database seeded with a user, a
project (two prompt versions), a conversation, a text file and a comparison, called with that
user's bearer token. Path parameters are replaced by the seeded ids in most cases whose path is
generated as valid, so the interesting code runs, not only 404s; uploads in valid cases are sent
as a ``.txt`` file so they reach storage. Every response must be conforming: no 5xx, status code
documented, content type and body as documented, 401 without the token, 405 with ``Allow`` for
undocumented methods, schema-valid requests not refused as malformed (400/413/415), and
schema-invalid requests refused.

Bounded and deterministic: ``MAX_EXAMPLES`` per operation, derandomized, no example database.
"""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from sqlalchemy import select

from app.extensions import db
from app.models import Message, Role
from app.openapi import spec
from tests.factories import (
    make_comparison,
    make_conversation,
    make_file,
    make_project,
    make_user,
    make_version,
)

MAX_EXAMPLES = 15

config = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {
            # Schema-valid requests may still break a business rule (a blank name after
            # trimming, a version number that is not stored, a file without text): 422.
            # Everything else the default allows, but never 400/413/415 for a valid request.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "404", "409", "422"],
            },
        },
    }
)
schema = schemathesis.openapi.from_dict(spec(), config=config)


@pytest.fixture
def seeded(app):
    user = make_user(app, email="fuzz@example.com")
    project_id = make_project(app, user, name="Fuzz", system_prompt="Be kind.")
    ids = {
        "project_id": project_id,
        "version": make_version(app, user, project_id, "Be brief.") - 1,
        "conversation_id": make_conversation(app, user, project_id),
        "file_id": make_file(app, user, project_id, name="notes.txt", content=b"some notes"),
        "comparison_id": make_comparison(app, user, project_id),
    }
    ids["message_id"] = reply_in(app, ids["conversation_id"])
    return user, ids


def reply_in(app, conversation_id: int) -> int:
    """The id of the conversation's assistant reply (what feedback rates)."""
    with app.app_context():
        return db.session.scalar(
            select(Message.id).where(
                Message.conversation_id == conversation_id, Message.role == Role.ASSISTANT
            )
        )


_turn = itertools.count()


def use_real_ids(case, ids) -> None:
    """Three valid cases in four name the seeded rows (the rest keep their generated ids):
    path ids, and the two stored version numbers a diff compares."""
    if case.meta is None or next(_turn) % 4 == 0:
        return
    path = case.meta.components.get(ParameterLocation.PATH)
    if case.path_parameters and path is not None and path.mode.is_positive:
        case.path_parameters.update({k: ids[k] for k in case.path_parameters if k in ids})
    query = case.meta.components.get(ParameterLocation.QUERY)
    if case.operation.path.endswith("/diff") and query is not None and query.mode.is_positive:
        case.query.update({"from": 1, "to": 2})


def upload_as_text(case) -> None:
    """The document names the part ``notes.txt``; random bytes are rarely UTF-8, so valid cases
    send their bytes hex-encoded: text, which reaches storage, dedupe and extraction."""
    body = case.meta.components.get(ParameterLocation.BODY) if case.meta else None
    if body is None or not body.mode.is_positive or not isinstance(case.body, dict):
        return
    raw = getattr(case.body.get("file"), "data", case.body.get("file"))
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    if isinstance(raw, bytes):
        case.body["file"] = raw.hex().encode()


class BufferedClient(FlaskClient):
    """Reads each answer whole and closes it, as a WSGI server does (a download is a file)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(case, app, seeded):
    user, ids = seeded
    use_real_ids(case, ids)
    if case.operation.path == "/api/projects/{project_id}/files" and case.method == "POST":
        upload_as_text(case)
    case.operation.schema.app = app  # this test's app: checks that re-send (auth probes) use it
    session = BufferedClient(app, app.response_class, use_cookies=False)
    case.call_and_validate(app=app, session=session, headers=user.headers)
