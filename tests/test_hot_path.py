"""The statements of a chat turn (issue 19: the hot path's round trips). A warm streamed turn
in a new conversation reads the project once (with whether it has chat files and, issue 26,
the user's spend against their budgets), inserts the conversation, the user's message and the
reply row, and stores the reply with one UPDATE that also charges it to the spending ledger
(on PostgreSQL one statement): no user row (the token cache), no files query for a project
without chat files, no ORM flush of rows written once."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from app.extensions import db
from tests.factories import make_project
from tests.test_prompt_cache import Statements

pytestmark = pytest.mark.use_fake()


def kinds(statements: list[str]) -> list[str]:
    """Each statement as its verb and table: ``SELECT projects``, ``INSERT messages``…"""
    out = []
    for s in statements:
        verb = s.split(None, 1)[0]
        if verb == "WITH":  # one CTE, data-modifying: "UPDATE messages + INSERT usage_days"
            inner, main = _split_cte(s)
            out.append(f"{kinds([inner])[0]} + {kinds([main])[0]}")
            continue
        if verb == "SELECT":
            table = _outer_from(s)
        elif verb == "INSERT":
            table = s.split()[2]
        elif verb == "UPDATE":
            table = s.split()[1]
        else:
            table = ""
        out.append(f"{verb} {table}".strip())
    return out


def _split_cte(statement: str) -> tuple[str, str]:
    """``WITH x AS (inner) main`` → ``(inner, main)``."""
    start = statement.index("(")
    depth = 0
    for i in range(start, len(statement)):
        depth += {"(": 1, ")": -1}.get(statement[i], 0)
        if depth == 0:
            return statement[start + 1 : i], statement[i + 1 :].strip()
    raise ValueError(statement)


def _outer_from(statement: str) -> str:
    """The table after the statement's own FROM (not a subquery's)."""
    depth = 0
    for i, char in enumerate(statement):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and statement.startswith(" FROM ", i):
            return statement[i + 6 :].split()[0]
    return ""


def stream(client, owner, project_id, **body):
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Hi", "stream": True, **body},
        headers=owner.headers,
    )
    data = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "event: done" in data, data[-500:]
    return data


def warm_versions(app) -> list[str]:
    """What a turn reads of prompt versions: nothing where they are cached (PostgreSQL)."""
    with app.app_context():
        cached = db.engine.dialect.name != "sqlite"
    return [] if cached else ["SELECT prompt_versions"]


def final_store(app) -> list[str]:
    """The reply's final UPDATE and its charge: one statement on PostgreSQL, two on SQLite."""
    with app.app_context():
        postgresql = db.engine.dialect.name == "postgresql"
    if postgresql:
        return ["UPDATE messages + INSERT usage_days"]
    return ["UPDATE messages", "INSERT usage_days"]


def test_a_warm_turn_in_a_new_conversation(app, client, owner):
    project_id = make_project(app, owner, system_prompt="You help.")
    stream(client, owner, project_id)  # warms the token and prompt caches
    with Statements(app) as statements:
        stream(client, owner, project_id)
    assert kinds(statements.seen) == [
        "SELECT projects",
        "INSERT conversations",
        "INSERT messages",
        *warm_versions(app),
        "INSERT messages",
        *final_store(app),
    ]


def test_a_warm_turn_in_a_conversation_with_history(app, client, owner):
    project_id = make_project(app, owner, system_prompt="You help.")
    first = stream(client, owner, project_id)
    conversation_id = int(first.split('"conversation":{"id":', 1)[1].split(",", 1)[0])
    with Statements(app) as statements:
        stream(client, owner, project_id, conversation_id=conversation_id)
    assert kinds(statements.seen) == [
        "SELECT projects",
        "SELECT conversations",  # the owner's conversation, with its pinned version
        "SELECT messages",  # the tree: (id, parent_id)
        "INSERT messages",
        *warm_versions(app),
        "SELECT messages",  # the branch's history
        "INSERT messages",
        "UPDATE conversations",  # updated_at and the new end of the branch
        *final_store(app),
    ]


@pytest.mark.postgres
def test_the_final_store_takes_no_transaction_round_trips(app, client, owner):
    """Issue 34: between the provider's end and the reader's ``done`` the reply is stored with
    its one statement alone, in autocommit (no ``BEGIN``, no ``COMMIT`` round trip): one
    statement is atomic on its own, and the guarded UPDATE keeps it exactly once."""
    project_id = make_project(app, owner, system_prompt="You help.")
    stream(client, owner, project_id)
    seen: list[tuple[str, bool]] = []

    def record(conn, cursor, statement, *args):
        seen.append((kinds([" ".join(statement.split())])[0], conn.connection.autocommit))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        stream(client, owner, project_id)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen[-1] == ("UPDATE messages + INSERT usage_days", True)
    assert not any(autocommit for _, autocommit in seen[:-1])  # the start is one transaction
