"""Share links (issue 32): a project's public chat page for visitors without an account.

The owner manages links through the JSON API and the share page; visitors are separate test
clients (their own cookie jars), exactly as separate browsers are. Replies come from the fake
provider over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Conversation, ShareLink
from app.models.base import utcnow
from app.share.visitors import COOKIE
from tests.conftest import META_TOKEN
from tests.factories import make_conversation, make_project, make_user
from tests.sse import parse_sse
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Support Bot", system_prompt="You are Support Bot.")


def new_link(client, owner, project_id, **body) -> dict:
    resp = client.post(f"/api/projects/{project_id}/share-links", json=body, headers=owner.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


@pytest.fixture
def link(client, owner, project_id) -> dict:
    return new_link(client, owner, project_id, allowed_origins=["https://example.com"])


def path_of(link: dict) -> str:
    return "/s/" + link["url"].rsplit("/s/", 1)[1]


def visitor(app):
    """A stranger's browser: a client of its own, which has opened the link's page."""
    return app.test_client()


def page_token(client, link: dict) -> str:
    """The visitor token the link's page shows this client (its ``csrf-token`` meta)."""
    page = client.get(path_of(link)).get_data(as_text=True)
    found = META_TOKEN.search(page)
    return found.group(1) if found else ""  # a link's 404 page has none


def say(client, link: dict, message: str, conversation_id=None, *, stream=True, **kw):
    """A message as the page's script sends it: with the page's visitor token."""
    body = {"message": message, "stream": stream}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    headers = {"X-CSRFToken": page_token(client, link), **kw.pop("headers", {})}
    return client.post(
        f"{path_of(link)}/chat", json=body, headers=headers, **own_token(client), **kw
    )


def unlock(client, link: dict, passcode: str):
    data = {"passcode": passcode, "csrf_token": page_token(client, link)}
    return client.post(f"{path_of(link)}/unlock", data=data, **own_token(client))


def own_token(client) -> dict:
    """Keep the suite's client (``CSRFClient``) from sending the login pages' token instead."""
    return {"csrf": False} if hasattr(client, "csrf_token") else {}


def streamed(resp) -> list[tuple[str, dict]]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "text/event-stream"
    events, _ = parse_sse(resp.get_data(as_text=True))
    return events


# --- a visitor's chat ------------------------------------------------------------------------


def test_a_visitor_chats_without_an_account_and_the_owner_sees_it(
    app, client, owner, project_id, link, fake
):
    fake.script("responses", Scenario(deltas=["Hello", " visitor."]))
    ada = visitor(app)
    page = ada.get(path_of(link))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Support Bot" in html and 'id="share-chat"' in html
    # Nothing of the owner's: no account menu, no link into the app.
    assert "/projects" not in html and "/api/" not in html and "ada@example.com" not in html
    assert COOKIE in page.headers["Set-Cookie"] and "HttpOnly" in page.headers["Set-Cookie"]
    assert "SameSite=Lax" in page.headers["Set-Cookie"]
    assert "Path=/s/" in page.headers["Set-Cookie"]

    events = streamed(say(ada, link, "Hi there"))
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done" and set(names[1:-1]) == {"delta"}
    assert "".join(data["text"] for name, data in events if name == "delta") == "Hello visitor."
    conversation_id = events[0][1]["conversation_id"]
    done = events[-1][1]["message"]
    assert done["content"] == "Hello visitor." and done["status"] == "complete"
    # A visitor's message says nothing of versions, models, tokens or feedback.
    assert set(done) == {"id", "role", "content", "status", "html"}
    assert set(events[0][1]) == {"conversation_id", "title"}
    (call,) = fake.calls("responses")
    assert call.json["instructions"] == "You are Support Bot."

    # The owner sees it among the project's conversations, marked as from the share link.
    listed = client.get(f"/api/projects/{project_id}/conversations", headers=owner.headers)
    (convo,) = listed.get_json()["data"]
    assert convo["id"] == conversation_id and convo["source"] == "share"
    with app.app_context():
        row = db.session.get(Conversation, conversation_id)
        assert row.share_link_id == link["id"] and len(row.visitor) == 32
    client.post("/login", data={"email": owner.email, "password": owner.password})
    chat_page = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert "source-share" in chat_page
    # And the link's use on the share API.
    (listed_link,) = client.get(
        f"/api/projects/{project_id}/share-links", headers=owner.headers
    ).get_json()["data"]
    assert listed_link["use"]["conversations"] == 1 and listed_link["use"]["visitors"] == 1
    assert listed_link["use"]["tokens_this_month"] > 0
    # And the per-version metrics, by source.
    metrics = f"/api/projects/{project_id}/prompts/metrics?source="
    by_source = {
        source: client.get(metrics + source, headers=owner.headers).get_json()["data"][0]["replies"]
        for source in ("share", "chat", "all")
    }
    assert by_source == {"share": 1, "chat": 0, "all": 1}

    # The visitor continues their conversation, and reads it back after a reload.
    fake.script("responses", Scenario(text="Again."))
    reply = say(ada, link, "And again", conversation_id, stream=False)
    assert reply.status_code == 200 and reply.get_json()["conversation_id"] == conversation_id
    history = ada.get(f"{path_of(link)}/conversations/{conversation_id}/messages").get_json()
    assert [m["content"] for m in history["data"]] == [
        "Hi there",
        "Hello visitor.",
        "And again",
        "Again.",
    ]
    assert "Again." in ada.get(path_of(link)).get_data(as_text=True)
    second = fake.calls("responses")[-1]
    assert [m["content"] for m in second.json["input"]][:2] == ["Hi there", "Hello visitor."]


def test_another_visitors_conversation_ids_are_404(app, owner, project_id, link, client):
    ada, bob = visitor(app), visitor(app)
    ada.get(path_of(link))
    bob.get(path_of(link))
    ada_convo = streamed(say(ada, link, "Mine"))[0][1]["conversation_id"]
    owners_own = make_conversation(app, owner, project_id)
    other_link = new_link(client, owner, project_id)
    on_other_link = streamed(say(ada, other_link, "Elsewhere"))[0][1]["conversation_id"]

    for conversation_id in (ada_convo, owners_own, on_other_link, 10**6):
        resp = say(bob, link, "Let me in", conversation_id)
        assert resp.status_code == 404, conversation_id
        assert resp.get_json()["error"]["code"] == "not_found"
        resp = bob.get(f"{path_of(link)}/conversations/{conversation_id}/messages")
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    # Ada's own conversation on the other link is not hers on this one either.
    assert say(ada, link, "Here?", on_other_link).status_code == 404
    # Bob's page does not show Ada's conversation.
    assert "Mine" not in bob.get(path_of(link)).get_data(as_text=True)
    assert "Mine" in ada.get(path_of(link)).get_data(as_text=True)


def test_a_forged_or_foreign_cookie_is_a_new_visitor(app, link):
    ada = visitor(app)
    ada.get(path_of(link))
    convo = streamed(say(ada, link, "Secret plans"))[0][1]["conversation_id"]
    mallory = visitor(app)
    mallory.set_cookie(COOKIE, '{"v": "' + "0" * 32 + '", "u": []}', path="/s/")
    assert say(mallory, link, "Hi", convo).status_code == 404
    assert "Secret plans" not in mallory.get(path_of(link)).get_data(as_text=True)


def test_revocation_mid_conversation_is_404_at_the_next_request(
    app, client, owner, project_id, link
):
    ada = visitor(app)
    ada.get(path_of(link))
    convo = streamed(say(ada, link, "Hello"))[0][1]["conversation_id"]
    resp = client.delete(
        f"/api/projects/{project_id}/share-links/{link['id']}", headers=owner.headers
    )
    assert resp.status_code == 200 and resp.get_json()["revoked_at"] is not None

    resp = say(ada, link, "Still there?", convo)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    assert ada.get(f"{path_of(link)}/conversations/{convo}/messages").status_code == 404
    page = ada.get(path_of(link))
    assert page.status_code == 404 and "/projects" not in page.get_data(as_text=True)
    # The conversation stays the owner's.
    got = client.get(f"/api/conversations/{convo}", headers=owner.headers)
    assert got.status_code == 200 and got.get_json()["source"] == "share"
    # Revoking again is the same.
    again = client.delete(
        f"/api/projects/{project_id}/share-links/{link['id']}", headers=owner.headers
    )
    assert again.status_code == 200


def test_an_expired_link_is_404(app, link):
    ada = visitor(app)
    assert ada.get(path_of(link)).status_code == 200
    with app.app_context():
        db.session.execute(
            update(ShareLink)
            .where(ShareLink.id == link["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert ada.get(path_of(link)).status_code == 404
    assert say(ada, link, "Hi").status_code == 404
    assert visitor(app).get("/s/no-such-token").status_code == 404


def test_a_passcode_is_asked_once_per_visitor(app, client, owner, project_id):
    link = new_link(client, owner, project_id, passcode="open sesame", expires_in_days=7)
    assert link["has_passcode"] is True and "passcode" not in link
    with app.app_context():
        stored = db.session.get(ShareLink, link["id"])
        assert stored.passcode_hash and "open sesame" not in stored.passcode_hash
    ada = visitor(app)
    page = ada.get(path_of(link)).get_data(as_text=True)
    assert 'name="passcode"' in page and 'id="share-chat"' not in page
    refused = say(ada, link, "Hi")
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "passcode_required"

    wrong = unlock(ada, link, "guess")
    assert wrong.status_code == 422 and "not the passcode" in wrong.get_data(as_text=True)
    right = unlock(ada, link, "open sesame")
    assert right.status_code == 302 and right.headers["Location"].endswith(path_of(link))
    assert 'id="share-chat"' in ada.get(path_of(link)).get_data(as_text=True)
    assert say(ada, link, "Hi").status_code == 200
    # Another visitor still needs it.
    assert say(visitor(app), link, "Hi").status_code == 403


# --- the owner's side ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allowed_origins": ["http://example.com"]}, "allowed_origins"),
        ({"allowed_origins": ["https://example.com/path"]}, "allowed_origins"),
        ({"allowed_origins": ["https://a.com; script-src *"]}, "allowed_origins"),
        ({"allowed_origins": ["https://'self'"]}, "allowed_origins"),
        ({"passcode": "abc"}, "passcode"),
        ({"passcode": "é" * 40}, "passcode"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"monthly_tokens": 0}, "monthly_tokens"),
    ],
)
def test_bad_link_settings_are_422(client, owner, project_id, body, field):
    resp = client.post(f"/api/projects/{project_id}/share-links", json=body, headers=owner.headers)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]


def test_the_share_page_creates_lists_and_revokes(app, client, owner, project_id, auth):
    auth.login(owner.email, owner.password)
    page = client.get(f"/projects/{project_id}/share")
    assert page.status_code == 200 and "Not shared" in page.get_data(as_text=True)
    created = client.post(
        f"/projects/{project_id}/share",
        data={"allowed_origins": "https://Example.com/ https://docs.example.com:8443"},
    )
    assert created.status_code == 201
    html = created.get_data(as_text=True)
    with app.app_context():
        link = db.session.scalar(select(ShareLink))
        assert link.allowed_origins == "https://example.com https://docs.example.com:8443"
    assert f"/s/{link.token}" in html and "&lt;iframe" in html
    assert ">Share</a>" in client.get(f"/projects/{project_id}").get_data(as_text=True)

    bad = client.post(f"/projects/{project_id}/share", data={"allowed_origins": "ftp://x"})
    assert bad.status_code == 422

    revoked = client.post(f"/projects/{project_id}/share/{link.id}/revoke", data={})
    assert revoked.status_code == 302
    assert visitor(app).get(f"/s/{link.token}").status_code == 404


def test_another_users_links_are_404(app, client, project_id, link):
    eve = make_user(app, email="eve@example.com")
    base = f"/api/projects/{project_id}/share-links"
    assert client.get(base, headers=eve.headers).status_code == 404
    assert client.post(base, json={}, headers=eve.headers).status_code == 404
    assert client.delete(f"{base}/{link['id']}", headers=eve.headers).status_code == 404
    eves_project = make_project(app, eve, name="Eve's")
    eves_base = f"/api/projects/{eves_project}/share-links"
    assert client.delete(f"{eves_base}/{link['id']}", headers=eve.headers).status_code == 404


# --- headers, CSRF, CORS ---------------------------------------------------------------------


def test_the_page_may_be_framed_by_the_links_origins_only(app, client, owner, project_id, link):
    page = visitor(app).get(path_of(link))
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://example.com" in csp
    assert "frame-ancestors 'none'" not in csp and "script-src 'self'" in csp
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"
    closed = new_link(client, owner, project_id)
    csp = visitor(app).get(path_of(closed)).headers["Content-Security-Policy"]
    assert "frame-ancestors 'self';" in csp or csp.endswith("frame-ancestors 'self'")
    # Every other page still refuses framing.
    assert "frame-ancestors 'none'" in client.get("/login").headers["Content-Security-Policy"]


def test_chat_needs_the_pages_csrf_token_and_our_origin(app, raw_client, link):
    raw_client.get(path_of(link))
    resp = raw_client.post(f"{path_of(link)}/chat", json={"message": "Hi"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "csrf_failed"
    ada = visitor(app)
    ada.get(path_of(link))
    resp = say(ada, link, "Hi", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "cross_origin"
    unlock = raw_client.post(f"{path_of(link)}/unlock", data={"passcode": "x"})
    assert unlock.status_code == 400


@pytest.mark.use_fake(openrouter=False, CORS_ORIGINS="https://example.com")
def test_no_cors_on_share_routes(app, link):
    ada = visitor(app)
    origin = {"Origin": "https://example.com"}
    assert "Access-Control-Allow-Origin" not in ada.get(path_of(link), headers=origin).headers
    preflight = ada.options(
        f"{path_of(link)}/chat",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_a_visitor_reaches_nothing_of_the_owners(app, owner, project_id, link):
    ada = visitor(app)
    ada.get(path_of(link))
    convo = streamed(say(ada, link, "Hi"))[0][1]["conversation_id"]
    page = ada.get(f"/projects/{project_id}")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    assert ada.get(f"/projects/{project_id}/share").status_code == 302
    for url in (
        f"/api/projects/{project_id}/conversations",
        f"/api/conversations/{convo}",
        f"/api/projects/{project_id}/share-links",
    ):
        assert ada.get(url).status_code == 401, url


# --- limits --------------------------------------------------------------------------------------


@pytest.mark.use_fake(
    openrouter=False,
    RATELIMIT_ENABLED=True,
    RATELIMIT_SHARE_VISITOR="3 per minute",
    RATELIMIT_SHARE_LINK="5 per minute",
)
def test_a_visitor_flood_is_limited_per_visitor_and_per_link_not_the_owner(
    app, client, owner, project_id, link, fake
):
    ada = visitor(app)
    ada.get(path_of(link))
    for _ in range(3):
        assert say(ada, link, "Hi", stream=False).status_code == 200
    flooded = say(ada, link, "Hi", stream=False)
    assert flooded.status_code == 429
    assert flooded.get_json()["error"]["code"] == "rate_limited"
    assert int(flooded.headers["Retry-After"]) > 0
    # Other visitors share the link's count: two more, then the link is full for everyone.
    bob = visitor(app)
    bob.get(path_of(link))
    assert say(bob, link, "Hi", stream=False).status_code == 200
    assert say(bob, link, "Hi", stream=False).status_code == 200
    carol = visitor(app)
    carol.get(path_of(link))
    assert say(carol, link, "Hi", stream=False).status_code == 429
    # Another link of the same project, and the owner's own chat, are unaffected.
    other = new_link(client, owner, project_id)
    assert say(carol, other, "Hi", stream=False).status_code == 200
    own = client.post(
        f"/api/projects/{project_id}/chat", json={"message": "Mine"}, headers=owner.headers
    )
    assert own.status_code == 200
    assert len(fake.calls("responses")) == 7


def test_the_links_monthly_budget_holds(app, client, owner, project_id, fake):
    link = new_link(client, owner, project_id, monthly_tokens=1)
    ada = visitor(app)
    ada.get(path_of(link))
    assert say(ada, link, "Hi", stream=False).status_code == 200  # crosses the budget
    refused = say(ada, link, "Again", stream=False)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "share_budget_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(fake.calls("responses")) == 1
    own = client.post(
        f"/api/projects/{project_id}/chat", json={"message": "Mine"}, headers=owner.headers
    )
    assert own.status_code == 200


def test_over_https_the_visitor_cookie_reaches_frames_of_other_sites(app, link, fake):
    """Where the site is https, a frame on another site gets the visitor cookie
    (``SameSite=None; Secure; Partitioned``), and the visitor's writes are guarded by the
    page's visitor token, not by the login session (whose Lax cookie a frame would not get)."""
    fake.script("responses", Scenario(text="Hello from the frame."))
    https = {"base_url": "https://localhost"}
    ada = visitor(app)
    page = ada.get(path_of(link), **https)
    cookies = page.headers.getlist("Set-Cookie")
    (visitor_cookie,) = [c for c in cookies if c.startswith(COOKIE + "=")]
    for part in ("Secure", "SameSite=None", "Partitioned", "HttpOnly", "Path=/s/"):
        assert part in visitor_cookie
    assert not [c for c in cookies if c.startswith("session=")]  # no login session for visitors
    token = META_TOKEN.search(page.get_data(as_text=True)).group(1)
    body = {"message": "Hi", "stream": False}
    done = ada.post(
        f"{path_of(link)}/chat", json=body, headers={"X-CSRFToken": token}, csrf=False, **https
    )
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["message"]["content"] == "Hello from the frame."

    # The token is the visitor's and the link's own.
    eve = visitor(app)
    eve_token = META_TOKEN.search(eve.get(path_of(link), **https).get_data(as_text=True))[1]
    altered = token[:-1] + ("1" if token[-1] == "0" else "0")
    for wrong in (eve_token, altered, ""):
        refused = ada.post(
            f"{path_of(link)}/chat", json=body, headers={"X-CSRFToken": wrong}, csrf=False, **https
        )
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "csrf_failed"
    # Over plain http the cookie stays SameSite=Lax (browsers refuse SameSite=None without
    # Secure).
    plain = visitor(app).get(path_of(link)).headers["Set-Cookie"]
    assert "SameSite=Lax" in plain and "Secure" not in plain
