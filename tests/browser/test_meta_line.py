"""The line under a reply (model · provider, prompt version, tokens, time, files, status) reads
the same for a reply that has just streamed and for the same reply on the page loaded later:
the server builds it once (``app/chat/render.py`` ``meta_line``), the template renders it and the
streamed ``done``/``error`` event carries it as ``meta``, which the script shows as text."""

import re

import pytest

from app.extensions import db
from app.files import services as file_services
from app.models import User
from tests.browser.helpers import chat_ready, login, reply_done
from tests.factories import make_file, make_project, make_user
from tools.fake_provider import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.use_fake(LLM_TIMEOUT_SECONDS=5)]

DOWN = {"status": 503, "message": "The engine is currently overloaded."}


@pytest.fixture
def owner(app):
    return make_user(app, email="ada@example.com", name="Ada")


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Support bot", system_prompt="Be kind.")


def use_in_chat(app, owner, project_id, file_id):
    with app.app_context():
        user = db.session.get(User, owner.id)
        file_services.set_use_in_chat(user=user, project_id=project_id, file_id=file_id, use=True)


def streamed_then_loaded(page, live_server, project_id, message):
    """The reply's line right after it streamed, and after loading its conversation again."""
    page.goto(f"{live_server}/projects/{project_id}")
    chat_ready(page)
    page.fill("#message", message)
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant")
    reply_done(page)
    streamed = page.locator(".msg-assistant .msg-info").inner_text()
    page.reload()  # the URL now names the conversation
    chat_ready(page)
    assert page.locator(".msg-assistant").count() == 1
    loaded = page.locator(".msg-assistant .msg-info").inner_text()
    return streamed, loaded


def test_a_fallback_reply_reads_the_same_streamed_and_loaded(
    app, fake, live_server, page, owner, project_id
):
    file_id = make_file(app, owner, project_id, name="handbook.txt", content=b"Refunds: 30 days")
    use_in_chat(app, owner, project_id, file_id)
    fake.script("responses", DOWN, DOWN)  # the primary fails before any text: fallback
    fake.script("chat", Scenario(text="Refunds take thirty days.", token_delay_ms=20))
    login(page, live_server, owner)

    streamed, loaded = streamed_then_loaded(page, live_server, project_id, "Refunds?")

    assert streamed == loaded
    pattern = (
        r"\S+ · openrouter \(fallback\) · prompt v1 · \d+→4 tokens · \d+\.\d s"
        r" · files: handbook\.txt"
    )
    assert re.fullmatch(pattern, streamed), streamed
    assert page.problems == []


@pytest.mark.parametrize(
    ("scripts", "status"),
    [
        pytest.param({"responses": [Scenario(text="One two three", fail_after=2)]}, "incomplete"),
        pytest.param({"responses": [DOWN, DOWN], "chat": [DOWN, DOWN]}, "error"),
    ],
)
def test_a_failed_reply_reads_the_same_streamed_and_loaded(
    app, fake, live_server, page, owner, project_id, scripts, status
):
    for endpoint, scenarios in scripts.items():
        fake.script(endpoint, *scenarios)
    login(page, live_server, owner)

    streamed, loaded = streamed_then_loaded(page, live_server, project_id, "Are you there?")

    assert streamed == loaded
    if status == "incomplete":  # who was answering when it broke off; no usage came
        assert re.fullmatch(r"\S+ · openai · prompt v1 · \d+\.\d s · incomplete", streamed)
    else:  # nobody answered
        assert re.fullmatch(r"prompt v1 · \d+\.\d s · error", streamed), streamed
    assert page.problems == []
