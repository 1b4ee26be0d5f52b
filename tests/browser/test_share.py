"""A share link in real Chromium: a stranger (a fresh browser context, no account) opens the
link, chats and watches the reply stream in; a second stranger sees nothing of the first's
conversation and cannot read it by id; the page loads inside an iframe of an allowed origin,
and a page of another origin cannot frame it.

The "sites" embedding the chat are pages on loopback servers of their own (other ports: other
origins, the same site, so the visitor's SameSite=Lax cookie goes with the frame's requests)."""

from __future__ import annotations

import threading
from html import escape

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.browser.helpers import wait_until, watch_stream
from tests.factories import make_project, make_share_link, make_user

pytestmark = pytest.mark.browser

READ_OTHERS = """async ([url, id]) => {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const chat = await fetch(url + "/chat", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRFToken": token},
    body: JSON.stringify({message: "Let me in", conversation_id: id}),
  });
  const history = await fetch(url + "/conversations/" + id + "/messages");
  return [chat.status, history.status];
}"""


def embedding_page(environ, start_response):
    src = Request(environ).args.get("src", "")
    html = (
        "<!doctype html><html><head><title>A customer's site</title></head><body>"
        f'<h1>Help</h1><iframe src="{escape(src)}" title="Chat" width="600" height="500">'
        "</iframe></body></html>"
    )
    return Response(html, mimetype="text/html")(environ, start_response)


@pytest.fixture
def sites():
    """Two pages that embed whatever ``?src=`` names; only the first is allowed."""
    servers = [make_server("127.0.0.1", 0, embedding_page, threaded=True) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_port}" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def share_url(app, live_server, sites):
    owner = make_user(app, email="owner@example.com")
    project_id = make_project(app, owner, name="Support Bot", system_prompt="Be kind.")
    _, token = make_share_link(app, owner, project_id, allowed_origins=[sites[0]])
    return f"{live_server}/s/{token}"


def reply_ended(page):
    wait_until(
        page,
        "!document.querySelector('.msg.streaming') && !document.querySelector('#send').disabled",
    )


def test_a_stranger_chats_and_another_sees_nothing(app, share_url, new_page, shot):
    app.config["OFFLINE_TOKEN_DELAY_MS"] = 40
    ada = new_page()
    ada.goto(share_url)
    ada.wait_for_selector("#share-chat[data-ready]", state="attached")
    assert ada.inner_text("h1") == "Support Bot"
    assert ada.locator("#user-menu").count() == 0
    assert ada.locator("a[href^='/projects'], a[href^='/login']").count() == 0
    ada.fill("#message", "How do refunds work?")
    ada.keyboard.press("Enter")
    reply = ada.locator(".msg-assistant").last
    reply.wait_for()
    lengths = watch_stream(ada, reply)
    assert len({n for n in lengths if n}) > 1, lengths  # it arrived in pieces
    reply_ended(ada)
    assert "Offline demo model." in reply.inner_text()
    assert reply.locator("strong").count() >= 1  # the server's Markdown
    assert ada.locator(".msg-user").inner_text() == "How do refunds work?"
    assert ada.locator(".msg-info").count() == 0  # no model, version or tokens for visitors
    conversation_id = int(ada.get_attribute("#share-chat", "data-conversation-id"))
    shot(ada, "share-link")

    ada.reload()
    assert "Offline demo model." in ada.locator(".msg-assistant").inner_text()

    bob = new_page()
    bob.goto(share_url)
    bob.wait_for_selector("#share-chat[data-ready]", state="attached")
    assert bob.locator(".msg").count() == 0 and bob.is_visible("#empty-chat")
    assert bob.evaluate(READ_OTHERS, [share_url, conversation_id]) == [404, 404]
    assert ada.problems == []
    # The browser logs the two refusals (404s of its own fetches), and nothing else.
    assert len(bob.problems) == 2 and all("404" in p for p in bob.problems), bob.problems


def test_the_chat_works_in_an_iframe_of_an_allowed_origin_only(share_url, sites, new_page):
    page = new_page()
    page.goto(f"{sites[0]}/?src={share_url}")
    frame = page.frame_locator("iframe")
    frame.locator("#share-chat[data-ready]").wait_for(state="attached")
    frame.locator("#message").fill("Hello from the widget")
    frame.locator("#send").click()
    reply = frame.locator(".msg-assistant.status-complete")
    reply.wait_for()
    assert "Offline demo model." in reply.inner_text()
    assert page.problems == []

    elsewhere = new_page()
    elsewhere.goto(f"{sites[1]}/?src={share_url}")
    elsewhere.wait_for_timeout(500)
    (child,) = [f for f in elsewhere.frames if f is not elsewhere.main_frame]
    assert child.query_selector("#share-chat") is None  # refused by frame-ancestors
    assert any("frame-ancestors" in p for p in elsewhere.problems), elsewhere.problems
