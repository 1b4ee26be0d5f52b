"""Durable replies in real Chromium: a reply is a server-side turn, not a connection. Reloading
the page, a second tab, Stop from that other tab and leaving for the Files tab and coming back all
leave the reply running on the server; the page attaches to it again
(GET /api/turns/<id>/events) and shows it streaming on to its end."""

import re

import pytest

from app.extensions import db
from app.models import Message
from tests.browser.conftest import watch
from tests.browser.helpers import chat_ready, login, reply_done, wait_until
from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

WORDS = [f"word{i} " for i in range(60)]
STORED_TEXT = "".join(WORDS)  # what the model sent, stored as it came
FULL_TEXT = STORED_TEXT.strip()  # as rendered: one paragraph, trimmed
STOPPED = "Stopped before the reply was complete."
LAST_REPLY_LENGTH = (
    "([...document.querySelectorAll('.msg-assistant .msg-body')].pop()?.textContent || '').length"
)
SOME_TEXT = f"{LAST_REPLY_LENGTH} > 20"


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Support bot", system_prompt="Be kind.")


@pytest.fixture
def chat_url(live_server, project_id):
    return f"{live_server}/projects/{project_id}"


@pytest.fixture
def chat_page(live_server, page, owner, chat_url):
    login(page, live_server, owner)
    page.goto(chat_url)
    chat_ready(page)
    return page


def long_reply(fake, delay_ms=60):
    fake.script("responses", Scenario(deltas=WORDS, token_delay_ms=delay_ms))


def send(page, text):
    page.fill("#message", text)
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant.streaming")
    return page.locator(".msg-assistant").last


def conversation_of(page) -> str:
    """The conversation id the page put in its URL (``?c=``) once the turn started."""
    for _ in range(400):
        found = re.search(r"[?&]c=(\d+)", page.url)
        if found:
            return found.group(1)
        page.wait_for_timeout(25)
    raise AssertionError(f"no ?c= in {page.url}")


def open_second_tab(page, url):
    second = watch(page.context.new_page())
    second.set_default_timeout(10_000)
    second.goto(url)
    chat_ready(second)
    return second


def is_streaming(bubble) -> bool:
    """The bubble has the class ``streaming`` (not just the server's ``status-streaming``)."""
    return "streaming" in (bubble.get_attribute("class") or "").split()


def body_length(bubble) -> int:
    return len(bubble.locator(".msg-body").inner_text())


def stored_replies(app):
    with app.app_context():
        rows = db.session.scalars(
            db.select(Message).where(Message.role == "assistant").order_by(Message.id)
        ).all()
        return [(m.status, m.content, m.error) for m in rows]


def test_reload_mid_reply_resumes_and_completes(app, fake, chat_page, shot):
    page = chat_page
    long_reply(fake)
    send(page, "Tell me a long story")
    wait_until(page, SOME_TEXT)
    conversation_of(page)  # the turn started: a reload opens this conversation

    page.reload()
    chat_ready(page)
    reply = page.locator(".msg-assistant").last
    assert reply.get_attribute("data-status") in ("streaming", "stopping")
    assert is_streaming(reply)
    assert page.is_visible("#stop"), page.problems  # a page error here explains the failure
    assert page.locator("#message").is_editable()  # the next message can be drafted meanwhile

    # The text goes on growing while the reply streams.
    wait_until(page, SOME_TEXT)
    first = body_length(reply)
    wait_until(
        page,
        f"{LAST_REPLY_LENGTH} > {first + 10}",
    )
    assert is_streaming(reply)  # still streaming when it grew
    shot(page, "chat-resumed")

    reply_done(page)
    assert reply.get_attribute("data-status") == "complete"
    assert reply.locator(".msg-body").inner_text().strip() == FULL_TEXT
    assert not page.is_visible("#stop")
    assert page.locator(".msg-user").count() == 1
    assert page.locator(".msg-assistant").count() == 1
    assert page.locator(".msg-user .msg-body").inner_text() == "Tell me a long story"

    assert stored_replies(app) == [("complete", STORED_TEXT, None)]
    assert len(fake.calls("responses")) == 1  # one upstream request, not one per reader
    assert fake.disconnects == 0  # the reload did not close it
    assert page.problems == []


def test_two_tabs_both_stream_the_same_reply(app, fake, chat_page, chat_url):
    page = chat_page
    long_reply(fake)
    first_reply = send(page, "Tell me a long story")
    wait_until(page, SOME_TEXT)
    conversation = conversation_of(page)

    second = open_second_tab(page, f"{chat_url}?c={conversation}")
    second_reply = second.locator(".msg-assistant").last
    assert is_streaming(second_reply)
    assert second.is_visible("#stop"), second.problems
    wait_until(second, SOME_TEXT)
    assert is_streaming(first_reply)  # tab 1 reads on too

    reply_done(page)
    reply_done(second)
    for tab, reply in ((page, first_reply), (second, second_reply)):
        assert reply.get_attribute("data-status") == "complete"
        assert reply.locator(".msg-body").inner_text().strip() == FULL_TEXT
        assert tab.locator(".msg-user").count() == 1
        assert tab.locator(".msg-assistant").count() == 1
        assert not tab.is_visible("#stop")
    assert first_reply.get_attribute("data-id") == second_reply.get_attribute("data-id")

    assert stored_replies(app) == [("complete", STORED_TEXT, None)]
    assert len(fake.calls("responses")) == 1
    assert fake.disconnects == 0
    assert second.problems == []
    assert page.problems == []


def test_stop_from_the_second_tab_stops_both(app, fake, chat_page, chat_url):
    page = chat_page
    long_reply(fake, delay_ms=80)
    first_reply = send(page, "Tell me a long story")
    wait_until(page, SOME_TEXT)
    conversation = conversation_of(page)

    second = open_second_tab(page, f"{chat_url}?c={conversation}")
    second_reply = second.locator(".msg-assistant").last
    assert second.is_visible("#stop"), second.problems
    wait_until(second, SOME_TEXT)
    second.click("#stop")

    reply_done(second)
    reply_done(page)
    texts = []
    for tab, reply in ((page, first_reply), (second, second_reply)):
        assert reply.get_attribute("data-status") == "incomplete"
        assert reply.locator(".msg-notice").inner_text() == "Stopped."
        assert reply.locator(".regenerate").inner_text() == "Regenerate"
        assert not tab.is_visible("#stop")
        texts.append(reply.locator(".msg-body").inner_text().strip())
    assert texts[0] == texts[1]
    assert texts[0].startswith("word0 word1") and "word59" not in texts[0]

    [(status, content, error)] = stored_replies(app)
    assert (status, error) == ("incomplete", STOPPED)
    assert content.strip() == texts[0]
    assert fake.wait_for_disconnects(1)  # Stop closed the upstream request
    assert len(fake.calls("responses")) == 1
    assert second.problems == []
    assert page.problems == []


def test_leaving_for_the_files_tab_and_back_keeps_the_reply(app, fake, chat_page):
    page = chat_page
    long_reply(fake, delay_ms=40)
    send(page, "Tell me a long story")
    wait_until(page, SOME_TEXT)
    conversation = conversation_of(page)

    page.click("nav.tabs >> text=Files")
    page.wait_for_url(re.compile(r"/files"))
    page.wait_for_timeout(300)
    page.go_back()
    chat_ready(page)
    assert f"c={conversation}" in page.url
    reply = page.locator(".msg-assistant").last
    # Either still streaming (attached again) or already complete.
    status, stop_shown = page.evaluate(
        "[[...document.querySelectorAll('.msg-assistant')].pop().dataset.status,"
        " !document.getElementById('stop').hidden]"
    )
    assert status in ("streaming", "stopping", "complete")
    assert status == "complete" or stop_shown, page.problems  # else: attached again, replying

    reply_done(page)
    assert reply.get_attribute("data-status") == "complete"
    assert reply.locator(".msg-body").inner_text().strip() == FULL_TEXT
    assert page.locator(".msg-user").count() == 1
    assert page.locator(".msg-assistant").count() == 1

    assert stored_replies(app) == [("complete", STORED_TEXT, None)]
    assert len(fake.calls("responses")) == 1
    assert fake.disconnects == 0  # leaving the page did not stop the reply
    assert page.problems == []


def test_a_reply_cut_by_a_shutdown_keeps_its_text_and_offers_retry_at_once(app, fake, chat_page):
    """The server stops mid-reply (what gunicorn's quick stop calls, ``drain.interrupt_now``):
    the page gets the ``interrupted`` terminal event, keeps the words it showed, drops Stop and
    offers Retry at once; Retry answers again."""
    from app.chat import drain

    page = chat_page
    long_reply(fake, delay_ms=80)
    reply = send(page, "Tell me a long story")
    wait_until(page, SOME_TEXT)
    drain.interrupt_now(app)

    reply_done(page)
    assert reply.get_attribute("data-status") == "interrupted"
    assert not page.is_visible("#stop")
    shown = reply.locator(".msg-body").inner_text().strip()
    assert shown and FULL_TEXT.startswith(shown)
    ((status, content, error),) = stored_replies(app)
    assert (status, error) == ("interrupted", "The server stopped while writing this reply.")
    assert content.strip() == shown
    retry = reply.locator("button.retry")
    assert retry.is_visible()

    fake.script("responses", Scenario(text="A second try."))
    retry.click()
    reply_done(page)
    assert page.locator(".msg-assistant .msg-body").last.inner_text().strip() == "A second try."
    assert page.problems == []
