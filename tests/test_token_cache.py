"""Bearer tokens checked from the per-process cache (``app/auth/token_cache.py``): a warm token
costs no query, and "log out everywhere" is refused at once by every process of the machine, by
another machine's at once through Redis (``TEST_BROKER_REDIS_URL``'s server, a channel prefix per
test), and without Redis within ``AUTH_CACHE_SECONDS``."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import ExitStack

import httpx
import pytest

from app import create_app
from app.auth.token_cache import TokenUsers
from app.extensions import db
from app.models import User
from tests.conftest import base_config
from tests.factories import make_user
from tests.test_prompt_cache import Statements
from tools.servers import PrivateRedis, free_port, gunicorn, migrate, register, server_env

REDIS = os.environ.get("TEST_BROKER_REDIS_URL", "redis://127.0.0.1:6379/11")


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


# --- other machines, through Redis (issue 26, finding 6) ------------------------------------------


@pytest.fixture
def machines(database_url, tmp_path):
    """``machines(redis_url)``: two nodes of a cluster, each with its own cache and its own
    revocation log (no shared disk), the same database and Redis, AUTH_CACHE_SECONDS=60."""
    made = []
    prefix = f"t{uuid.uuid4().hex[:10]}:"  # pub/sub channels are server-wide: one per test

    def build(redis_url: str):
        for name in ("a", "b"):
            log = str(tmp_path / f"{name}-revocations.log")
            made.append(
                other_process(
                    database_url,
                    log,
                    AUTH_CACHE_SECONDS=60,
                    REDIS_URL=redis_url,
                    REDIS_KEY_PREFIX=prefix,
                )
            )
        return made

    yield build
    for node in made:
        node.extensions["token_users"].shutdown()
        node.extensions["broker"].shutdown()
        with node.app_context():
            db.engine.dispose()


def served_from_cache(node, headers):
    """A client of ``node`` once it answers the token from its cache (no user read): its
    revocation listener is subscribed (rows read before that are not kept)."""
    client = node.test_client()
    deadline = time.monotonic() + 5
    while True:
        with Statements(node) as reads:
            assert me(client, headers).status_code == 200
        if user_reads(reads) == 0:
            return client
        assert time.monotonic() < deadline, "the token was never served from the cache"
        time.sleep(0.02)


def refused_within(client, headers, seconds: float) -> float:
    """How long until ``client`` refuses the token (fails past ``seconds``)."""
    start = time.monotonic()
    while me(client, headers).status_code == 200:
        assert time.monotonic() - start < seconds, "another machine still accepts the token"
        time.sleep(0.01)
    return time.monotonic() - start


def new_project(client, headers):
    return client.post(
        "/api/projects", json={"name": "After", "system_prompt": "You help."}, headers=headers
    )


def test_log_out_everywhere_reaches_another_machine_at_once_through_redis(app, owner, machines):
    a, b = machines(REDIS)
    on_a = served_from_cache(a, owner.headers)
    on_b = served_from_cache(b, owner.headers)
    assert new_project(on_b, owner.headers).status_code == 201  # writes pass through the cache

    assert on_a.post("/api/auth/logout-all", headers=owner.headers).status_code == 204
    took = refused_within(on_b, owner.headers, seconds=2)  # AUTH_CACHE_SECONDS is 60

    assert took < 1.0
    resp = me(on_b, owner.headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_revoked"
    write = new_project(on_b, owner.headers)
    assert write.status_code == 401
    assert write.get_json()["error"]["code"] == "token_revoked"
    other = make_user(app)  # another user's cached token on that machine is unaffected
    assert me(on_b, other.headers).status_code == 200


@pytest.mark.server
def test_revocations_missed_while_redis_was_away_are_not_trusted_after(app, owner, machines):
    """The listener of B loses Redis; A's revocation cannot be published; when Redis is back,
    B's listener subscribes again and drops everything it cached before."""
    redis = PrivateRedis().start()
    try:
        a, b = machines(redis.url)
        on_a = served_from_cache(a, owner.headers)
        on_b = served_from_cache(b, owner.headers)
        redis.stop()
        assert on_a.post("/api/auth/logout-all", headers=owner.headers).status_code == 204
        assert me(on_b, owner.headers).status_code == 200  # the TTL is all B has now
        redis.start()  # same port
        refused_within(on_b, owner.headers, seconds=10)  # the listener retries every 2 s
    finally:
        redis.stop()


def test_without_a_reachable_redis_revocation_falls_back_to_the_ttl(
    app, owner, database_url, tmp_path
):
    """Redis configured but down: tokens are still cached and checked, "log out everywhere"
    still answers 204, and another machine refuses the token when its entry expires."""
    dead = PrivateRedis()  # a free port nothing listens on
    settings = {"REDIS_URL": dead.url, "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:10]}:"}
    a = other_process(database_url, str(tmp_path / "a.log"), **settings)
    b = other_process(database_url, str(tmp_path / "b.log"), AUTH_CACHE_SECONDS=0.5, **settings)
    try:
        on_a, on_b = a.test_client(), b.test_client()
        assert me(on_b, owner.headers).status_code == 200
        assert on_a.post("/api/auth/logout-all", headers=owner.headers).status_code == 204
        assert me(on_b, owner.headers).status_code == 200  # within the fallback bound
        time.sleep(0.6)
        assert me(on_b, owner.headers).status_code == 401
    finally:
        for node in (a, b):
            node.extensions["token_users"].shutdown()
            with node.app_context():
                db.engine.dispose()


@pytest.mark.server
def test_two_gunicorn_nodes_refuse_a_revoked_token_at_once(server_database, tmp_path):
    """The attack as it was run: two nodes (gunicorn masters, each with its own revocation log,
    so only Redis links them), AUTH_CACHE_SECONDS=60. Log out everywhere on A; B refuses the
    old token, writes included, at once."""
    settings = {
        "AUTH_CACHE_SECONDS": "60",
        "REDIS_URL": REDIS,
        "REDIS_KEY_PREFIX": f"t{uuid.uuid4().hex[:10]}:",
    }
    with ExitStack() as stack:
        nodes = []
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            env = server_env(
                server_database,
                free_port(),
                AUTH_REVOCATION_LOG=str(folder / "revocations.log"),
                UPLOAD_DIR=str(folder / "uploads"),
                REPLY_SPOOL_DIR=str(folder / "spool"),
                **settings,
            )
            if name == "a":
                migrate(env)
            nodes.append(stack.enter_context(gunicorn(env, folder)))
        a, b = nodes
        auth = {"Authorization": f"Bearer {register(a.base, 'ada@example.com')}"}
        http = stack.enter_context(httpx.Client(trust_env=False, timeout=10))
        for _ in range(20):  # B caches the user (its listener subscribes at the first check)
            assert http.get(f"{b.base}/api/auth/me", headers=auth).status_code == 200
            time.sleep(0.02)
        project = {"name": "P", "system_prompt": "You help."}
        assert http.post(f"{b.base}/api/projects", json=project, headers=auth).status_code == 201

        assert http.post(f"{a.base}/api/auth/logout-all", headers=auth).status_code == 204
        start = time.monotonic()
        while http.get(f"{b.base}/api/auth/me", headers=auth).status_code == 200:
            assert time.monotonic() - start < 2, "node B still accepts the revoked token"
            time.sleep(0.01)
        write = http.post(f"{b.base}/api/projects", json=project, headers=auth)
        assert write.status_code == 401
        assert write.json()["error"]["code"] == "token_revoked"
