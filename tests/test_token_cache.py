"""Bearer tokens checked from the per-process cache (``app/auth/token_cache.py``): a warm token
costs no query, and "log out everywhere" is refused at once by every process of the machine,
within ``AUTH_CACHE_SECONDS`` by another machine's."""

from __future__ import annotations

import time

from app import create_app
from app.auth.token_cache import TokenUsers
from app.extensions import db
from app.models import User
from tests.conftest import base_config
from tests.factories import make_user
from tests.test_prompt_cache import Statements


def user_reads(statements: Statements) -> int:
    """How many of the statements read ``users``."""
    return sum(1 for s in statements.seen if s.startswith("SELECT") and "FROM users" in s)


def me(client, headers):
    return client.get("/api/auth/me", headers=headers)


def other_process(database_url, log_path, **extra):
    """Another web process: its own app (own cache), the same database."""
    return create_app(base_config(database_url, AUTH_REVOCATION_LOG=log_path, **extra))


def test_a_warm_token_reads_no_user_row(app, client, owner):
    assert me(client, owner.headers).status_code == 200  # reads the row, keeps it
    with Statements(app) as reads:
        for _ in range(3):
            assert me(client, owner.headers).get_json()["user"]["email"] == owner.email
    assert user_reads(reads) == 0


def test_without_the_cache_every_request_reads_the_row(app, client, owner):
    app.extensions["token_users"].ttl = 0
    me(client, owner.headers)
    with Statements(app) as reads:
        me(client, owner.headers)
        me(client, owner.headers)
    assert user_reads(reads) == 2


def test_log_out_everywhere_refuses_the_cached_token_at_once(app, client, owner):
    assert me(client, owner.headers).status_code == 200  # cached
    assert client.post("/api/auth/logout-all", headers=owner.headers).status_code == 204
    resp = me(client, owner.headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_revoked"


def test_another_process_of_the_machine_refuses_it_at_the_next_request(
    app, client, owner, database_url
):
    other = other_process(database_url, app.config["AUTH_REVOCATION_LOG"])  # the same machine
    other_client = other.test_client()
    assert me(other_client, owner.headers).status_code == 200  # the other process caches it
    assert client.post("/api/auth/logout-all", headers=owner.headers).status_code == 204
    resp = me(other_client, owner.headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_revoked"
    with other.app_context():
        db.engine.dispose()


def test_another_machine_refuses_it_once_its_entry_expires(
    app, client, owner, database_url, tmp_path
):
    """No shared revocation log (another machine): the cached row is trusted for at most
    AUTH_CACHE_SECONDS; this is the bound the cache adds."""
    other = other_process(database_url, str(tmp_path / "elsewhere.log"), AUTH_CACHE_SECONDS=0.5)
    other_client = other.test_client()
    assert me(other_client, owner.headers).status_code == 200
    assert client.post("/api/auth/logout-all", headers=owner.headers).status_code == 204
    assert me(other_client, owner.headers).status_code == 200  # within the bound
    time.sleep(0.6)
    assert me(other_client, owner.headers).status_code == 401
    with other.app_context():
        db.engine.dispose()


def test_a_token_newer_than_the_cached_row_is_read_again(
    app, client, owner, database_url, tmp_path
):
    other = other_process(database_url, str(tmp_path / "elsewhere.log"), AUTH_CACHE_SECONDS=60)
    other_client = other.test_client()
    assert me(other_client, owner.headers).status_code == 200  # caches version 0
    assert client.post("/api/auth/logout-all", headers=owner.headers).status_code == 204
    login = client.post(
        "/api/auth/login", json={"email": owner.email, "password": owner.password}
    ).get_json()
    fresh = {"Authorization": f"Bearer {login['token']}"}
    with Statements(other) as reads:
        assert me(other_client, fresh).status_code == 200
    assert user_reads(reads) == 1
    with other.app_context():
        db.engine.dispose()


def test_writes_through_a_cached_user_attach_it_to_their_own_session(app, client, owner):
    """Each request gets its own detached user: a service that attaches it (a version's
    author) does so in its own session, request after request."""
    for i in range(3):
        resp = client.post(
            "/api/projects",
            json={"name": f"P{i}", "system_prompt": "You help."},
            headers=owner.headers,
        )
        assert resp.status_code == 201, resp.get_json()
    with app.app_context():
        assert db.session.query(User).count() == 1  # never inserted again by a cascade


# --- the cache itself ---------------------------------------------------------------------------


def row(app, user_id: int) -> User:
    with app.app_context():
        user = db.session.get(User, user_id)
        db.session.expunge(user)
        return user


def test_a_row_read_before_a_revocation_is_not_kept(app, tmp_path):
    """Request A misses and reads the row; meanwhile another process revokes the user, and
    request B of this process reads that from the log; then A's stale row must not stay."""
    user, other = make_user(app), make_user(app)
    here, there = TokenUsers(60, tmp_path / "log"), TokenUsers(60, tmp_path / "log")
    found, generation = here.lookup(user.id, 0)  # request A
    assert found is None
    loaded = row(app, user.id)  # read before the revocation was committed
    there.revoke(user.id)
    here.lookup(other.id, 0)  # request B: takes the revocation from the log
    here.put(loaded, generation)  # request A ends
    assert here.lookup(user.id, 0)[0] is None


def test_revocations_from_the_log_drop_only_their_users(app, tmp_path):
    first, second = make_user(app), make_user(app)
    here, there = TokenUsers(60, tmp_path / "log"), TokenUsers(60, tmp_path / "log")
    for user in (first, second):
        _, generation = here.lookup(user.id, 0)
        here.put(row(app, user.id), generation)
    there.revoke(first.id)
    assert here.lookup(first.id, 0)[0] is None
    cached = here.lookup(second.id, 0)[0]
    assert cached is not None and cached.email == second.email


def test_the_cache_stays_bounded(app, tmp_path):
    users = [make_user(app) for _ in range(4)]
    cache = TokenUsers(60, tmp_path / "log")
    cache.MAX_ENTRIES = 3
    for user in users:
        _, generation = cache.lookup(user.id, 0)
        cache.put(row(app, user.id), generation)
    assert len(cache._entries) <= 3
    assert cache.lookup(users[-1].id, 0)[0] is not None  # the newest is kept
