"""The per-process cache of prompt versions (``prompts.versions.version_by_id``): a turn reads
no version from the database once it is cached, and what a project serves still follows its
pointer at once, changed from this process or another."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from app import create_app
from app.extensions import db
from app.models import User
from app.prompts import services as prompt_services
from tests.conftest import base_config
from tests.factories import make_project

pytestmark = pytest.mark.use_fake()


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are version one.")


def chat(client, owner, project_id, message="Hi"):
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": message}, headers=owner.headers
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


class Statements:
    """SQL statements the app's engine runs while active."""

    def __init__(self, app):
        with app.app_context():
            self.engine = db.engine
        self.seen: list[str] = []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, *args):
        self.seen.append(" ".join(statement.split()))

    def reading_versions(self) -> list[str]:
        return [s for s in self.seen if s.startswith("SELECT") and "FROM prompt_versions" in s]


def test_the_cache_is_on_where_ids_are_never_reused(app, client, owner, project_id):
    chat(client, owner, project_id)
    cache = app.extensions["prompt_versions"]
    with app.app_context():
        sqlite = db.engine.dialect.name == "sqlite"
    assert (cache is False) is sqlite


@pytest.mark.postgres
def test_a_warm_turn_reads_no_version(app, client, owner, project_id, fake):
    chat(client, owner, project_id)  # the first turn of this process loads and caches v1
    with Statements(app) as statements:
        reply = chat(client, owner, project_id)
    assert statements.reading_versions() == []
    assert reply["message"]["prompt_version"] == 1
    assert fake.calls("responses")[-1].json["instructions"] == "You are version one."


def size_cache(app, size: int) -> None:
    app.config["PROMPT_CACHE_SIZE"] = size
    app.extensions.pop("prompt_versions", None)  # made again, with this size, when next used


@pytest.mark.postgres
def test_without_the_cache_every_turn_reads_its_version(app, client, owner, project_id):
    size_cache(app, 0)
    chat(client, owner, project_id)
    with Statements(app) as statements:
        chat(client, owner, project_id)
    assert len(statements.reading_versions()) == 1


@pytest.mark.postgres
def test_a_pointer_moved_by_another_process_is_followed_at_once(
    app, client, owner, project_id, fake, database_url
):
    assert chat(client, owner, project_id)["message"]["prompt_version"] == 1
    other = create_app(base_config(database_url, **fake.app_config()))  # another process's app
    with other.app_context():
        user = db.session.get(User, owner.id)
        prompt_services.create_version(user=user, project_id=project_id, content="Version two.")
    assert chat(client, owner, project_id)["message"]["prompt_version"] == 2
    assert fake.calls("responses")[-1].json["instructions"] == "Version two."
    with other.app_context():  # roll back to v1: cached here, served again
        prompt_services.activate_version(
            user=db.session.get(User, owner.id), project_id=project_id, number=1
        )
    with Statements(app) as statements:
        assert chat(client, owner, project_id)["message"]["prompt_version"] == 1
    assert statements.reading_versions() == []
    assert fake.calls("responses")[-1].json["instructions"] == "You are version one."
    with other.app_context():
        db.engine.dispose()


@pytest.mark.postgres
def test_the_cache_keeps_at_most_its_size(app, client, owner, fake):
    size_cache(app, 2)
    projects = [
        make_project(app, owner, name=f"P{i}", system_prompt=f"Prompt {i}.") for i in range(3)
    ]
    for project in projects:
        chat(client, owner, project)
    cache = app.extensions["prompt_versions"]
    assert cache.size == 2
    with Statements(app) as statements:
        chat(client, owner, projects[0])  # the least recently used: dropped, read again
        chat(client, owner, projects[2])  # still there
    assert len(statements.reading_versions()) == 1
    assert fake.calls("responses")[-1].json["instructions"] == "Prompt 2."
