"""Chat features in real Chromium against the fake provider server (tools/fake_provider.py):
Markdown with highlighted code and copy buttons, Regenerate, Stop (Esc) stored as incomplete,
provider failure with Retry, the conversation list (rename, delete), "load earlier messages" and
auto-scroll that pauses while the reader is scrolled up."""

import pytest
from playwright.sync_api import expect

from app.chat import services as chat_services
from app.chat import start as start_turn
from app.extensions import db
from app.models import Message, User
from tests.browser.helpers import (
    chat_ready,
    login,
    reply_done,
    wait_until,
    watch_stream,
)
from tests.factories import make_conversation, make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

CODE_REPLY = [
    "Here is ",
    "a **Python** ",
    "function:\n\n",
    "```python\n",
    "def greet(name):\n",
    '    return f"Hello, {name}!"\n',
    "```\n\n",
    "- short\n",
    "- clear\n",
]
CODE = 'def greet(name):\n    return f"Hello, {name}!"'


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def project_id(app, owner):
    return make_project(
        app, owner, name="Support bot", description="Answers questions", system_prompt="Be kind."
    )


@pytest.fixture
def chat_page(live_server, page, owner, project_id):
    login(page, live_server, owner)

    def open_(conversation_id=None):
        suffix = f"?c={conversation_id}" if conversation_id else ""
        page.goto(f"{live_server}/projects/{project_id}{suffix}")
        chat_ready(page)
        return page

    return open_


def send(page, text):
    page.fill("#message", text)
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant.streaming, .msg-assistant[data-status]")
    return page.locator(".msg-assistant").last


def stored_replies(app):
    with app.app_context():
        return [
            (m.status, m.content)
            for m in db.session.scalars(
                db.select(Message).where(Message.role == "assistant").order_by(Message.id)
            )
        ]


def test_markdown_reply_with_code_copy_buttons_and_regenerate(app, fake, chat_page, shot):
    fake.script("responses", Scenario(deltas=CODE_REPLY, token_delay_ms=60))
    page = chat_page()
    send(page, "Show me a greeting function")
    reply = page.locator(".msg-assistant").first
    lengths = watch_stream(page, reply)
    assert len({n for n in lengths if n}) > 1, lengths  # streamed in more than one piece
    reply_done(page)

    body = reply.locator(".msg-body")
    assert body.locator("strong").inner_text() == "Python"
    assert body.locator("li").all_inner_texts() == ["short", "clear"]
    assert body.locator("pre code .hl-k").first.inner_text() == "def"  # highlighted
    copy_code = body.locator("pre .copy-code")
    assert copy_code.is_visible()
    copy_code.click()
    expect(copy_code).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    # Copy gives the Markdown as written, fences and list marks intact; Copy text what is shown.
    reply.locator(".copy-reply").click()
    expect(reply.locator(".copy-reply")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "".join(CODE_REPLY)
    reply.locator(".copy-text").click()
    expect(reply.locator(".copy-text")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("Here is a Python function:") and "```" not in copied
    assert copied == (
        "Here is a Python function:\n\n" + CODE + "\n\nshort\nclear"
    )  # no "Copy" label of the code block's button
    # The same after a reload, from the stored reply.
    page.reload()
    chat_ready(page)
    reply = page.locator(".msg-assistant").first
    body = reply.locator(".msg-body")
    reply.locator(".copy-reply").click()
    expect(reply.locator(".copy-reply")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "".join(CODE_REPLY)
    assert "gpt-4o-mini-2024-07-18 · openai · prompt v1" in reply.locator(".msg-info").inner_text()
    wait_until(
        page,
        "[...document.querySelectorAll('.copy-code, .copy-reply')]"
        ".every(b => b.textContent === 'Copy')"
        " && document.querySelector('.copy-text').textContent === 'Copy text'",
    )
    shot(page, "chat", full_page=True)
    page.click("#theme-toggle")
    shot(page, "chat-dark", full_page=True)
    page.click("#theme-toggle")

    # Regenerate: a new reply to the same message takes its place; the first is kept as a
    # version of it (‹ 1/2 ›), one click away, also after a reload.
    fake.script("responses", Scenario(text="A second take: use a lambda.", token_delay_ms=20))
    reply.locator(".regenerate").click()
    wait_until(page, "document.querySelector('.msg-assistant .branch-switch')")
    reply_done(page)
    replies = page.locator(".msg-assistant")
    assert replies.count() == 1
    second = replies.nth(0)
    assert second.locator(".msg-body").inner_text() == "A second take: use a lambda."
    assert second.locator(".branch-count").inner_text() == "2/2"
    assert page.locator(".msg-user").count() == 1
    calls = fake.calls("responses")
    assert len(calls) == 2
    assert calls[0].json["input"] == calls[1].json["input"]  # the same question, answered again

    with page.expect_navigation():
        second.locator(".branch-prev").click()  # back to the first version
    chat_ready(page)
    wait_until(page, "document.querySelector('.msg-assistant .branch-count')")
    first = page.locator(".msg-assistant")
    assert first.count() == 1
    assert first.locator(".branch-count").inner_text() == "1/2"
    assert first.locator("pre code").inner_text().startswith("def greet")
    page.reload()  # the version shown is kept
    chat_ready(page)
    assert page.locator(".msg-assistant .branch-count").inner_text() == "1/2"
    assert page.problems == []


def test_stop_with_escape_keeps_the_partial_reply_as_incomplete(app, fake, chat_page):
    words = [f"word{i} " for i in range(60)]
    fake.script("responses", Scenario(deltas=words, token_delay_ms=80))
    page = chat_page()
    reply = send(page, "Tell me a long story")
    wait_until(page, "document.querySelector('.msg-assistant .msg-body').textContent.length > 10")
    assert page.is_visible("#stop")
    page.keyboard.press("Escape")
    reply_done(page)
    assert not page.is_visible("#stop")
    # Stopped: a note (not an error) and Regenerate, the same live and after a reload.
    assert reply.get_attribute("data-status") == "incomplete"
    assert reply.locator(".msg-info").inner_text().endswith(" · stopped")
    assert reply.locator(".msg-notice").inner_text() == "Stopped."
    assert reply.locator(".msg-error").count() == 0
    assert reply.locator(".regenerate").inner_text() == "Regenerate"
    assert reply.locator(".retry").count() == 0
    assert page.locator("#chat-live").inner_text() == "Stopped."
    assert fake.wait_for_disconnects(1)  # Stop closed the upstream request too

    reply_meta = reply.locator(".msg-info").inner_text()
    [(status, content)] = stored_replies(app)  # stored before the `done` was sent
    assert status == "incomplete"
    assert content.startswith("word0 word1") and "word59" not in content
    page.reload()
    chat_ready(page)
    stored = page.locator(".msg-assistant")
    assert stored.get_attribute("data-status") == "incomplete"
    assert stored.locator(".msg-info").inner_text() == reply_meta
    assert stored.locator(".msg-notice").inner_text() == "Stopped."
    assert stored.locator(".msg-error").count() == 0
    assert stored.locator(".regenerate").inner_text() == "Regenerate"
    assert page.problems == []


def test_provider_failure_shows_the_reason_keeps_the_message_and_retry_succeeds(
    app, fake, chat_page, shot
):
    down = {"status": 503, "message": "The engine is currently overloaded."}
    fake.script("responses", down, down)
    fake.script("chat", down, down)
    page = chat_page()
    send(page, "Are you there?")
    reply_done(page)
    reply = page.locator(".msg-assistant").first
    error = reply.locator(".msg-error")
    assert error.get_attribute("role") == "alert"
    # The reason in words for the person; the provider's own text only under "Details".
    reason = "The model service is not answering. Retry in a moment."
    assert error.locator(":scope > p").inner_text() == reason
    details = error.locator("details.msg-details")
    assert not details.locator("p").is_visible()
    details.locator("summary").click()
    assert "OpenRouter" in details.inner_text() and "overloaded" in details.inner_text()
    shot(page, "chat-failure")
    assert page.locator("#chat-live").inner_text() == reason
    assert page.locator(".msg-user .msg-body").inner_text() == "Are you there?"  # the message stays
    assert reply.locator(".retry").inner_text() == "Retry"  # not "Regenerate"

    page.reload()  # the same story from the stored reply
    chat_ready(page)
    reply = page.locator(".msg-assistant").first
    assert reply.locator(".msg-error > p").inner_text() == reason
    assert "overloaded" in reply.locator(".msg-details p").text_content()  # folded
    reply.locator(".retry").click()  # the fake answers normally again
    new_text = "document.querySelector('.msg-assistant .msg-body')?.textContent.length ?? 0"
    wait_until(page, f"({new_text}) > 0")
    reply_done(page)
    # The retried answer takes the failed one's place (the failure is a version of it, ‹ 1/2 ›).
    assert page.locator(".msg-assistant").count() == 1
    retried = page.locator(".msg-assistant").last
    assert retried.get_attribute("data-status") == "complete"
    assert retried.locator(".msg-body").inner_text() == "Hello from the fake model."
    versions = "document.querySelector('.msg-assistant .branch-count')?.textContent"
    wait_until(page, f"{versions} === '2/2'")

    page.reload()
    chat_ready(page)
    assert page.locator(".msg-assistant").count() == 1
    assert page.locator(".msg-user .msg-body").all_inner_texts() == ["Are you there?"]
    assert page.locator(".msg-assistant").last.get_attribute("data-status") == "complete"
    assert [s for s, _ in stored_replies(app)] == ["error", "complete"]
    assert page.problems == []


def test_conversation_list_renames_and_deletes_in_place(app, owner, project_id, chat_page):
    first = make_conversation(app, owner, project_id, message="First question")
    second = make_conversation(app, owner, project_id, message="Second question")
    page = chat_page(second)
    items = page.locator("#conv-list li")
    assert items.locator("a").all_inner_texts() == ["Second question", "First question"]
    current = page.locator(f"#conv-list li[data-id='{second}']")
    assert current.locator("a").get_attribute("aria-current") == "page"

    hostile = "<img src=x onerror=alert(1)> renamed"
    current.get_by_role("button", name="Rename “Second question”").click()
    title_input = current.get_by_label("Conversation title")
    assert page.evaluate("document.activeElement.id") == f"rename-{second}"
    title_input.fill(hostile)
    title_input.press("Enter")
    expect(current.locator("a")).to_have_text(hostile)
    assert current.locator("a").inner_text() == hostile  # text, not markup
    assert page.inner_text("#chat-title") == hostile
    page.reload()
    assert page.inner_text("#chat-title") == hostile

    # Escape cancels a rename.
    other = page.locator(f"#conv-list li[data-id='{first}']")
    other.locator(".conv-rename").click()
    page.keyboard.press("Escape")
    assert other.locator("a").inner_text() == "First question"

    other.locator(".conv-delete").click()
    assert "Delete “First question”" in other.inner_text()
    other.get_by_role("button", name="Delete", exact=True).click()
    wait_until(page, f"!document.querySelector('#conv-list li[data-id=\"{first}\"]')")
    assert page.locator("#conv-list li").count() == 1

    # Deleting the open conversation goes to a new chat.
    current = page.locator(f"#conv-list li[data-id='{second}']")
    current.locator(".conv-delete").click()
    current.get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url(f"**/projects/{project_id}")
    assert page.inner_text("#chat-title") == "New conversation"
    assert page.is_visible("#conv-empty")
    assert page.problems == []


def test_load_earlier_messages_and_auto_scroll_pauses_when_scrolled_up(
    app, fake, owner, project_id, chat_page
):
    with app.app_context():
        user = db.session.get(User, owner.id)
        cid = None
        for i in range(20):  # 40 messages; the page opens with the newest 30
            turn = start_turn.send(
                user=user, project_id=project_id, message=f"m{i}", conversation_id=cid
            )
            chat_services.complete_turn(turn)
            cid = turn.conversation_id
    page = chat_page(cid)
    messages = page.locator("#messages .msg")
    assert messages.count() == 30
    at_bottom = """(() => {
        const l = document.getElementById('messages');
        return l.scrollHeight - l.scrollTop - l.clientHeight < 48;
    })()"""
    assert page.evaluate(at_bottom)

    page.click("#load-earlier")
    wait_until(page, "document.querySelectorAll('#messages .msg').length === 40")
    assert not page.is_visible("#load-earlier")  # nothing more
    assert messages.first.inner_text() == "m0"
    assert page.locator(".msg-user .msg-body").all_inner_texts() == [f"m{i}" for i in range(20)]

    words = [f"w{i} " + "lorem ipsum " * 6 + "\n\n" for i in range(40)]
    fake.script("responses", Scenario(deltas=words, token_delay_ms=70))
    send(page, "a long answer please")
    wait_until(page, at_bottom)
    page.eval_on_selector("#messages", "l => { l.scrollTop = 0; }")
    page.wait_for_timeout(600)  # several deltas arrive meanwhile
    assert page.eval_on_selector("#messages", "l => l.scrollTop") < 5  # the reader stays put
    assert page.is_visible("#jump-latest")
    page.click("#jump-latest")
    assert page.evaluate(at_bottom)
    page.wait_for_timeout(400)
    assert page.evaluate(at_bottom)  # following again
    assert not page.is_visible("#jump-latest")
    reply_done(page)
    assert page.evaluate(at_bottom)
    assert page.problems == []


@pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5, CHAT_TITLES=True)
def test_a_new_conversation_is_titled_by_the_model_after_its_first_reply(app, fake, chat_page):
    fake.script(
        "responses",
        Scenario(text="Refunds take thirty days."),
        Scenario(text="Refund timelines", ttft_ms=300),
    )
    page = chat_page()
    send(page, "how long do refunds take for a damaged parcel paid by card, roughly?")
    reply_done(page)
    # The cut first message at once, then the model's title, in the header and in the list.
    wait_until(page, "document.getElementById('chat-title').textContent === 'Refund timelines'")
    assert page.locator("#conv-list .is-current > a").inner_text() == "Refund timelines"
    assert fake.calls("responses")[-1].json["max_output_tokens"] == 64
    page.reload()
    chat_ready(page)
    assert page.inner_text("#chat-title") == "Refund timelines"
    # A second message in the same conversation asks for no title.
    send(page, "And for exchanges?")
    reply_done(page)
    page.wait_for_timeout(300)
    assert len(fake.calls("responses")) == 3
    assert page.problems == []


@pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5, CHAT_TITLES=True)
def test_a_reload_before_the_title_comes_still_shows_it(app, fake, chat_page):
    """The title is the server's job, not the page's: a page reloaded as soon as the first
    reply ended (before the slow title call answered) shows the model's title when it comes.
    Before: the page asked for it, so a reload showed the cut first message until the next."""
    fake.script(
        "responses",
        Scenario(text="Refunds take thirty days."),
        Scenario(text="Refund timelines", ttft_ms=1500),
    )
    page = chat_page()
    send(page, "how long do refunds take for a damaged parcel paid by card, roughly?")
    reply_done(page)
    page.reload()
    chat_ready(page)
    assert page.inner_text("#chat-title").startswith("how long do refunds take")
    wait_until(page, "document.getElementById('chat-title').textContent === 'Refund timelines'")
    assert page.locator("#conv-list .is-current > a").inner_text() == "Refund timelines"
    assert len(fake.calls("responses")) == 2
    assert page.problems == []


def test_search_conversations_and_keyboard_shortcuts(app, owner, project_id, chat_page):
    for message in ("Refund for a damaged parcel", "Shipping to Norway", "Refund by card"):
        make_conversation(app, owner, project_id, message=message)
    page = chat_page()
    titles = "[...document.querySelectorAll('#conv-list > li:not([hidden]) > a')].map(a => a.text)"
    page.keyboard.press("Control+K")
    assert page.evaluate("document.activeElement.id") == "conv-search"
    page.keyboard.type("refund")
    assert page.evaluate(titles) == ["Refund by card", "Refund for a damaged parcel"]
    page.keyboard.type(" card")
    assert page.evaluate(titles) == ["Refund by card"]
    page.fill("#conv-search", "invoice")
    assert page.evaluate(titles) == []
    assert page.inner_text("#conv-no-match") == "No conversation matches “invoice”."
    page.keyboard.press("Escape")  # clears the search
    assert len(page.evaluate(titles)) == 3
    # Ctrl+Shift+O: a new chat, from anywhere on the page.
    page.click(".conv-item >> nth=0 >> a")
    chat_ready(page)
    assert "?c=" in page.url
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(lambda url: "?c=" not in url)
    chat_ready(page)
    assert page.inner_text("#chat-title") == "New conversation"


def test_edit_a_sent_message_into_a_new_branch_and_switch_back(app, fake, chat_page, shot):
    fake.script("responses", Scenario(text="Thirty days."), Scenario(text="Yes, by card."))
    page = chat_page()
    send(page, "How long do refunds take?")
    reply_done(page)
    send(page, "Can I get it on my card?")
    reply_done(page)
    first = page.locator(".msg-user").first
    first.locator(".edit-message").click()
    box = first.locator(".edit-form textarea")
    assert box.input_value() == "How long do refunds take?"
    box.fill("How long do refunds take for a damaged parcel?")
    fake.script("responses", Scenario(text="Damaged parcels: five days.", token_delay_ms=20))
    box.press("Enter")
    wait_until(page, "document.querySelector('.msg-user .branch-count')?.textContent === '2/2'")
    reply_done(page)
    # The new branch: the edited message and its answer; the old second exchange is gone.
    assert page.locator(".msg-user .msg-body").all_inner_texts() == [
        "How long do refunds take for a damaged parcel?"
    ]
    assert page.locator(".msg-assistant .msg-body").all_inner_texts() == [
        "Damaged parcels: five days."
    ]
    # The model was sent the new text alone, not the old branch.
    assert fake.calls("responses")[-1].json["input"] == [
        {"role": "user", "content": "How long do refunds take for a damaged parcel?"}
    ]
    shot(page, "chat-branches")
    # ‹ goes back to the first version with everything after it.
    with page.expect_navigation():
        page.locator(".msg-user .branch-prev").click()
    chat_ready(page)
    wait_until(page, "document.querySelectorAll('.msg').length === 4")
    assert page.locator(".msg-user .msg-body").all_inner_texts() == [
        "How long do refunds take?",
        "Can I get it on my card?",
    ]
    assert page.locator(".msg-user .branch-count").first.inner_text() == "1/2"
    # ↑ in the empty message box edits your last message; Escape leaves it as it was.
    page.focus("#message")
    page.keyboard.press("ArrowUp")
    editing = page.locator(".msg-user.editing")
    assert editing.locator("textarea").input_value() == "Can I get it on my card?"
    page.keyboard.press("Escape")
    assert page.locator(".msg-user.editing").count() == 0
    assert page.locator(".msg-user .msg-body").last.is_visible()
    assert page.problems == []
