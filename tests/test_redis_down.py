"""Redis out of reach with rate limiting on: a real gunicorn server whose rate-limit counts and
turn events live on a private ``redis-server``, stopped mid-test and started again.

Every route that counts against a limit (register and log in, by page and API; chat, streamed
and not; regenerate; Compare; uploads by page and API; attaching to a turn) keeps serving, the
limits keep biting (counted in the process), ``/readyz`` says what happened, the log says it
once, and when Redis is back the counts go there again."""

from __future__ import annotations

import re
import time
import uuid
from contextlib import ExitStack

import httpx
import pytest
import redis

from tools.servers import PrivateRedis, gunicorn, migrate, new_project, provider_env, register

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

PASSWORD = "correct horse battery"
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
CHAT_LIMIT = 12
FALLBACK_LOG = "Rate limit storage unreachable"


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def page_client(base: str, email: str, *, new: bool) -> tuple[httpx.Client, httpx.Response]:
    """A browser-like client that registered (``new``) or logged in through the pages."""
    client = httpx.Client(base_url=base, trust_env=False, timeout=30)
    path = "/register" if new else "/login"
    token = META_TOKEN.search(client.get(path).text).group(1)
    form = {"email": email, "password": PASSWORD, "csrf_token": token}
    if new:
        form |= {"confirm": PASSWORD, "name": "Ada"}
    return client, client.post(path, data=form)


def every_limited_route(base: str, token: str, project: int) -> dict[str, httpx.Response]:
    """One request to each route that counts against a rate limit."""
    api = httpx.Client(base_url=base, trust_env=False, timeout=30, headers=bearer(token))
    email = f"u{uuid.uuid4().hex[:8]}@example.com"
    out: dict[str, httpx.Response] = {}
    with api:
        out["API register"] = httpx.post(
            f"{base}/api/auth/register",
            json={"email": email, "password": PASSWORD},
            trust_env=False,
        )
        out["API login"] = httpx.post(
            f"{base}/api/auth/login", json={"email": email, "password": PASSWORD}, trust_env=False
        )
        chat = api.post(f"/api/projects/{project}/chat", json={"message": "hi", "stream": False})
        out["chat"] = chat
        out["chat, streamed"] = api.post(
            f"/api/projects/{project}/chat", json={"message": "again", "stream": True}
        )
        conversation = chat.json()["conversation_id"] if chat.status_code == 200 else 0
        out["regenerate"] = api.post(
            f"/api/conversations/{conversation}/regenerate", json={"stream": False}
        )
        turn = chat.json()["message"]["id"] if chat.status_code == 200 else 0
        out["turn events"] = api.get(f"/api/turns/{turn}/events")
        out["compare"] = api.post(
            f"/api/projects/{project}/comparisons",
            json={"message": "which?", "left": {"version": 1}, "right": {"version": 2}},
        )
        out["API upload"] = api.post(
            f"/api/projects/{project}/files", files={"file": ("a.txt", b"alpha", "text/plain")}
        )
    page_email = f"p{uuid.uuid4().hex[:8]}@example.com"
    browser, out["page register"] = page_client(base, page_email, new=True)
    browser.close()
    browser, out["page login"] = page_client(base, page_email, new=False)
    try:
        login = httpx.post(
            f"{base}/api/auth/login",
            json={"email": page_email, "password": PASSWORD},
            trust_env=False,
        )
        if login.status_code != 200:
            out["page upload"] = login  # no project to upload into
            return out
        pid = new_project(base, login.json()["token"])
        page = browser.get(f"/projects/{pid}")
        token = META_TOKEN.search(page.text).group(1)
        out["page upload"] = browser.post(
            f"/projects/{pid}/files",
            data={"csrf_token": token},
            files={"file": ("b.txt", b"beta", "text/plain")},
        )
        listed = browser.get(f"/projects/{pid}/files").json()["data"]
        out["page upload"].stored = [f["name"] for f in listed] == ["b.txt"]
    finally:
        browser.close()
    return out


EXPECTED = {
    "API register": 201,
    "API login": 200,
    "chat": 200,
    "chat, streamed": 200,
    "regenerate": 200,
    "turn events": 200,
    "compare": 201,
    "API upload": 201,
    "page register": 302,
    "page login": 302,
    "page upload": 302,
}


def statuses(responses: dict[str, httpx.Response]) -> dict[str, int]:
    return {name: r.status_code for name, r in responses.items()}


def test_redis_down_every_limited_route_serves_limits_still_bite_and_redis_takes_over_again(
    fake, tmp_path, server_database, private_redis
):
    env = provider_env(
        fake,
        tmp_path,
        server_database,
        RATELIMIT_ENABLED="true",
        RATELIMIT_STORAGE_URI=private_redis.url,
        RATELIMIT_KEY_PREFIX="down",
        RATELIMIT_CHAT=f"{CHAT_LIMIT} per minute",
        REDIS_URL=private_redis.url,
    )
    migrate(env)
    with ExitStack() as stack:
        server = stack.enter_context(gunicorn(env, tmp_path))
        base = server.base
        token = register(base, "owner@example.com")
        project = new_project(base, token)
        v2 = {"content": "You answer tersely.", "candidate": True}
        r = httpx.post(
            f"{base}/api/projects/{project}/prompts",
            json=v2,
            headers=bearer(token),
            trust_env=False,
        )
        assert r.status_code == 201, r.text
        assert httpx.get(f"{base}/readyz", trust_env=False).json()["checks"]["ratelimit"] == "ok"

        private_redis.stop()
        down = every_limited_route(base, token, project)
        assert statuses(down) == EXPECTED, {n: r.text[:200] for n, r in down.items()}
        assert down["page upload"].stored

        ready = httpx.get(f"{base}/readyz", trust_env=False)
        assert ready.status_code == 200  # the node still serves: it is not taken out of rotation
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["ratelimit"] == "unavailable (counting per process)"

        # The limits still bite while Redis is out: counted in this (one) worker process. The
        # routes above already spent 4 of the owner's chat budget (chat, stream, regenerate,
        # and compare twice); the rest run out here.
        api = stack.enter_context(
            httpx.Client(base_url=base, trust_env=False, timeout=30, headers=bearer(token))
        )
        codes = [
            api.post(f"/api/projects/{project}/chat", json={"message": "n"}).status_code
            for _ in range(CHAT_LIMIT)
        ]
        assert 429 in codes and set(codes) <= {200, 429}, codes
        refused = api.post(f"/api/projects/{project}/chat", json={"message": "n"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0

        log = server.log()
        assert log.count(FALLBACK_LOG) == 1, log  # once per outage, not once per request
        assert "Traceback" not in log and " 500 " not in log

        # Redis back (empty, as a restarted cache is): after Flask-Limiter's next look at it
        # (1, 2, 4 … s apart), counts go to Redis again, and /readyz says ok.
        private_redis.start()
        client = redis.Redis.from_url(private_redis.url)
        stack.callback(client.close)
        deadline = time.monotonic() + 40
        while not client.keys("*down*"):
            assert time.monotonic() < deadline, "counts never went back to Redis"
            httpx.post(
                f"{base}/api/auth/login",
                json={"email": "owner@example.com", "password": PASSWORD},
                trust_env=False,
            )
            time.sleep(0.5)
        ready = httpx.get(f"{base}/readyz", trust_env=False).json()
        assert ready["checks"]["ratelimit"] == "ok" and ready["checks"]["redis"] == "ok"
        assert "Rate limit storage recovered" in server.log()


def test_an_unreachable_rate_limit_store_at_start_is_reported_and_served_around(
    fake, tmp_path, server_database
):
    nothing = PrivateRedis()  # a port of its own where nothing listens
    env = provider_env(
        fake,
        tmp_path,
        server_database,
        RATELIMIT_ENABLED="true",
        RATELIMIT_STORAGE_URI=nothing.url,
    )
    migrate(env)
    with gunicorn(env, tmp_path) as server:
        ready = httpx.get(f"{server.base}/readyz", trust_env=False)
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["ratelimit"] == "unavailable (counting per process)"
        token = register(server.base, "early@example.com")
        project = new_project(server.base, token)
        r = httpx.post(
            f"{server.base}/api/projects/{project}/chat",
            json={"message": "hi"},
            headers=bearer(token),
            trust_env=False,
        )
        assert r.status_code == 200, r.text
        assert "Traceback" not in server.log()
