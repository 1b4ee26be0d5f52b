"""Conversation titles written by the model, as a ``title`` job on the queue: queued when a
pending conversation's reply is stored complete, one short call with the first exchange over
real HTTP to the fake provider, no request from the page. The automatic title (the cut first
message) stays when the user renamed it (before or during the call), the offline model answers,
or the provider fails (retried by the sweep, a bounded number of times). ``POST …/title``
still answers API clients (their owner only)."""

import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app import create_app
from app.chat.titles import INSTRUCTIONS, TITLE_ATTEMPTS, clean, write_title
from app.extensions import db
from app.models import Conversation, UsageDay
from app.models.base import utcnow
from tests.conftest import base_config
from tests.factories import make_project, make_user
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2, CHAT_TITLES=True)
QUESTION = "How long do refunds take when the parcel arrives damaged and I paid by card?"
AUTOMATIC = QUESTION[:59].rstrip() + "…"  # cut at 60 characters
DOWN = Scenario(status=401, error="invalid_api_key")
# The jobs wait in the queue until the test runs them (``run_pending``).
HELD = pytest.mark.use_fake(
    openrouter=False, LLM_TIMEOUT_SECONDS=2, CHAT_TITLES=True, QUEUE_IN_PROCESS=False
)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are a support bot.")


def start(client, owner, project_id, message=QUESTION) -> int:
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": message}, headers=owner.headers
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["conversation_id"]


def title_of(client, owner, cid) -> str:
    return client.get(f"/api/conversations/{cid}", headers=owner.headers).get_json()["title"]


def state_of(app, cid) -> tuple[str | None, int]:
    with app.app_context():
        row = db.session.execute(
            select(Conversation.title_state, Conversation.title_attempts).where(
                Conversation.id == cid
            )
        ).one()
        db.session.commit()
        return row.title_state, row.title_attempts


def wait_state(app, cid, state, timeout=10.0) -> None:
    deadline = time.monotonic() + timeout
    while state_of(app, cid)[0] != state:
        assert time.monotonic() < deadline, state_of(app, cid)
        time.sleep(0.02)


def calls(app, user_id) -> int:
    with app.app_context():
        found = db.session.scalar(
            select(db.func.coalesce(db.func.sum(UsageDay.calls), 0)).where(
                UsageDay.user_id == user_id
            )
        )
        db.session.commit()
        return found


def lease_over(app, cid) -> None:
    with app.app_context():
        db.session.execute(
            update(Conversation)
            .where(Conversation.id == cid)
            .values(title_claimed_at=utcnow() - timedelta(hours=1))
        )
        db.session.commit()


def test_the_server_titles_a_conversation_after_its_first_reply(
    app, client, owner, project_id, fake
):
    """No request from the page: the reply's completion queues the job. Before: nobody asked,
    the cut first message stayed."""
    fake.script(
        "responses",
        Scenario(text="Refunds take thirty days."),
        Scenario(text='"Damaged parcel refunds."'),
    )
    cid = start(client, owner, project_id)
    wait_state(app, cid, "done")
    assert title_of(client, owner, cid) == "Damaged parcel refunds"
    # One short call: the instructions, the first exchange, a small token budget.
    call = fake.calls("responses")[-1].json
    assert call["instructions"] == INSTRUCTIONS
    assert call["input"] == [
        {"role": "user", "content": f"User: {QUESTION}\n\nAssistant: Refunds take thirty days."}
    ]
    assert call["max_output_tokens"] == 64
    assert calls(app, owner.id) == 2  # the reply and the title, in the user's spending
    # A second reply queues nothing; running the job again calls nobody.
    start_again = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "And by bank transfer?", "conversation_id": cid},
        headers=owner.headers,
    )
    assert start_again.status_code == 200
    with app.app_context():
        assert write_title(cid) is False
    time.sleep(0.2)
    assert len(fake.calls("responses")) == 3
    assert title_of(client, owner, cid) == "Damaged parcel refunds"


@pytest.mark.use_fake(
    openrouter=False, LLM_TIMEOUT_SECONDS=2, CHAT_TITLES=True, CHAT_CHECKPOINT_SECONDS=0.05
)
def test_a_reply_finished_after_its_reader_left_queues_the_title(
    app, client, owner, project_id, fake
):
    """The page leaves mid-reply (a reload): the turn goes on in a thread of the process, its
    checkpoints commit meanwhile, and its completion queues the job all the same."""
    words = [f"w{i} " for i in range(30)]
    fake.script("responses", Scenario(deltas=words, token_delay_ms=20), Scenario(text="Many words"))
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Count", "stream": True},
        headers=owner.headers,
        buffered=False,
    )
    received = ""
    chunks = iter(resp.response)
    while "event: delta" not in received:
        received += next(chunks).decode()
    resp.close()  # the reader leaves
    url = f"/api/projects/{project_id}/conversations"
    cid = client.get(url, headers=owner.headers).get_json()["data"][0]["id"]
    wait_state(app, cid, "done")
    assert title_of(client, owner, cid) == "Many words"


@HELD
def test_a_rename_before_the_job_is_kept(app, client, owner, project_id, fake):
    """Two conversations answered, their jobs queued but not run; one is renamed. The job
    titles the other and leaves the renamed one as the user named it, without a call."""
    fake.script("responses", Scenario(text="Thirty days."), Scenario(text="Five days."))
    renamed = start(client, owner, project_id, "Refund question")
    other = start(client, owner, project_id, "Shipping question")
    patch = client.patch(
        f"/api/conversations/{renamed}", json={"title": "Mine"}, headers=owner.headers
    )
    assert patch.status_code == 200
    fake.script("responses", Scenario(text="Shipping times"))
    assert app.extensions["jobs"].run_pending() == 2
    assert title_of(client, owner, renamed) == "Mine"
    assert title_of(client, owner, other) == "Shipping times"
    assert len(fake.calls("responses")) == 3  # two replies, one title
    assert state_of(app, renamed)[0] == state_of(app, other)[0] == "done"


def test_a_rename_during_the_call_wins(app, client, owner, project_id, fake):
    fake.script("responses", Scenario(text="Thirty days."), Scenario(text="Model", ttft_ms=600))
    cid = start(client, owner, project_id, "Short question")
    deadline = time.monotonic() + 5
    while len(fake.calls("responses")) < 2:  # the title call is out
        assert time.monotonic() < deadline
        time.sleep(0.01)
    rename = {"title": "Mine"}
    assert (
        client.patch(f"/api/conversations/{cid}", json=rename, headers=owner.headers).status_code
        == 200
    )
    wait_state(app, cid, "done")
    assert title_of(client, owner, cid) == "Mine"
    assert calls(app, owner.id) == 2  # the call was made: it is charged all the same


def test_a_provider_failure_keeps_the_automatic_title_and_is_retried_a_few_times(
    app, client, owner, project_id, fake
):
    """A failed call keeps the cut first message and its claim; once the lease is over the
    sweep queues the job again, ``TITLE_ATTEMPTS`` calls at most, then ``failed``."""
    fake.script("responses", Scenario(text="Thirty days."), *[DOWN] * TITLE_ATTEMPTS)
    cid = start(client, owner, project_id)
    deadline = time.monotonic() + 5
    while state_of(app, cid)[1] < 1 or len(fake.calls("responses")) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    assert title_of(client, owner, cid) == AUTOMATIC
    assert state_of(app, cid) == ("pending", 1)
    app.extensions["maintenance"].run_now()  # the lease holds: nothing is queued
    time.sleep(0.2)
    assert len(fake.calls("responses")) == 2
    for attempt in range(2, TITLE_ATTEMPTS + 1):
        lease_over(app, cid)
        app.extensions["maintenance"].run_now()
        deadline = time.monotonic() + 5
        while len(fake.calls("responses")) < attempt + 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    wait_state(app, cid, "failed")
    lease_over(app, cid)
    app.extensions["maintenance"].run_now()
    time.sleep(0.2)
    assert len(fake.calls("responses")) == 1 + TITLE_ATTEMPTS
    assert title_of(client, owner, cid) == AUTOMATIC
    assert calls(app, owner.id) == 1  # the reply only: failed calls are not charged


def test_a_failed_first_reply_is_titled_once_a_retry_completes(
    app, client, owner, project_id, fake
):
    """The first reply fails: no title call, the conversation waits. Its Retry (regenerate)
    completes, and the job titles it. Before: the page asked only after a first reply that
    completed, so the cut message stayed for good."""
    fake.script("responses", DOWN)
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": "Hi there"}, headers=owner.headers
    )
    assert resp.status_code == 502
    url = f"/api/projects/{project_id}/conversations"
    cid = client.get(url, headers=owner.headers).get_json()["data"][0]["id"]
    time.sleep(0.2)
    assert len(fake.calls("responses")) == 1
    assert state_of(app, cid) == ("pending", 0)
    fake.script("responses", Scenario(text="Hello!"), Scenario(text="Greetings"))
    again = client.post(f"/api/conversations/{cid}/regenerate", json={}, headers=owner.headers)
    assert again.status_code == 200, again.get_json()
    wait_state(app, cid, "done")
    assert title_of(client, owner, cid) == "Greetings"
    assert fake.calls("responses")[-1].json["input"][0]["content"] == (
        "User: Hi there\n\nAssistant: Hello!"
    )


@HELD
def test_a_dead_run_is_taken_up_by_the_sweep_and_written_once(app, client, owner, project_id, fake):
    """A run that claimed the conversation and died (its worker killed mid-call) leaves the
    claim; the sweep waits for its lease, then queues the job, which calls once and writes
    once; a second run of the job changes nothing."""
    fake.script("responses", Scenario(text="Thirty days."), Scenario(text="Refunds"))
    cid = start(client, owner, project_id, "Short question")
    with app.app_context():  # the dead run's claim
        db.session.execute(
            update(Conversation)
            .where(Conversation.id == cid)
            .values(title_claimed_at=utcnow(), title_attempts=1)
        )
        db.session.commit()
    app.extensions["jobs"].run_pending()  # the message of the turn: the claim is live
    app.extensions["maintenance"].run_now()
    app.extensions["jobs"].run_pending()
    assert len(fake.calls("responses")) == 1
    lease_over(app, cid)
    app.extensions["maintenance"].run_now()
    app.extensions["maintenance"].run_now()  # two sweeps, two messages: one call
    assert app.extensions["jobs"].run_pending() == 2
    assert len(fake.calls("responses")) == 2
    assert title_of(client, owner, cid) == "Refunds"
    assert state_of(app, cid) == ("done", 2)
    assert calls(app, owner.id) == 2


@HELD
def test_another_users_conversation_is_not_touched(app, client, owner, project_id, fake):
    """Eve's ``POST …/title`` on the owner's conversation is a 404 and calls nobody; her own
    conversation's job titles hers only."""
    fake.script("responses", Scenario(text="Thirty days."))
    mine = start(client, owner, project_id, "Owner question")
    eve = make_user(app, email="eve@example.com")
    assert client.post(f"/api/conversations/{mine}/title", headers=eve.headers).status_code == 404
    assert len(fake.calls("responses")) == 1
    fake.script("responses", Scenario(text="Five days."), Scenario(text="Eve's title"))
    app.extensions["jobs"].huey.flush()  # the owner's job is not run: only Eve's
    theirs = start(client, eve, make_project(app, eve), "Eve question")
    assert app.extensions["jobs"].run_pending() == 1
    assert title_of(client, eve, theirs) == "Eve's title"
    assert title_of(client, owner, mine) == "Owner question"
    assert state_of(app, mine) == ("pending", 0)
    assert calls(app, owner.id) == 1 and calls(app, eve.id) == 2


@HELD
def test_the_endpoint_still_titles_for_api_clients(app, client, owner, project_id, fake):
    """``POST …/title`` runs the job's step in the request; asked again, it calls nobody."""
    fake.script("responses", Scenario(text="Thirty days."), Scenario(text="Refunds"))
    cid = start(client, owner, project_id, "Short question")
    resp = client.post(f"/api/conversations/{cid}/title", headers=owner.headers)
    assert resp.status_code == 200
    assert resp.get_json()["title"] == "Refunds"
    assert client.post(f"/api/conversations/{cid}/title", headers=owner.headers).status_code == 200
    assert app.extensions["jobs"].run_pending() == 1  # the turn's message: done already
    assert len(fake.calls("responses")) == 2


@pytest.mark.use_fake(openai=False, openrouter=False, CHAT_TITLES=True)
def test_the_offline_model_keeps_the_automatic_title(app, client, owner, project_id, fake):
    cid = start(client, owner, project_id, "Short question")
    time.sleep(0.2)
    assert client.post(f"/api/conversations/{cid}/title", headers=owner.headers).status_code == 200
    assert title_of(client, owner, cid) == "Short question"
    assert state_of(app, cid) == (None, 0)
    assert fake.requests == []


@pytest.mark.use_fake(openrouter=False, CHAT_TITLES=False)
def test_titles_turned_off_keep_the_automatic_title(app, client, owner, project_id, fake):
    cid = start(client, owner, project_id, "Short question")
    time.sleep(0.2)
    assert title_of(client, owner, cid) == "Short question"
    assert len(fake.calls("responses")) == 1  # the reply only


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Damaged parcel refunds", "Damaged parcel refunds"),
        ('"Refunds for damaged parcels."', "Refunds for damaged parcels"),
        ("Title: **Card refunds**\n", "Card refunds"),
        ("  “Remboursements”  ", "Remboursements"),
        ("", ""),
        ("...", ""),
        ("word " * 30, ("word " * 12).strip()[:59].rstrip() + "…"),
    ],
)
def test_the_answer_is_cleaned_into_a_title(answer, title):
    assert clean(answer) == title


@HELD
def test_a_job_that_finds_the_database_away_is_one_warning_and_changes_nothing(
    app, client, owner, project_id, fake, caplog
):
    """A worker runs a title job while the database is away: one line naming the job, no
    traceback (huey prints one for an error that escapes a job), and the conversation stays
    pending; the job's next run (here the one still queued; else the sweep's) titles it."""
    fake.script("responses", Scenario(text="Thirty days."))
    cid = start(client, owner, project_id, QUESTION)
    away = create_app(
        base_config("postgresql+psycopg://nobody@127.0.0.1:9/gone", QUEUE_IN_PROCESS=False)
    )
    try:
        assert away.extensions["jobs"].enqueue("title", cid)
        with caplog.at_level(logging.INFO, logger="app.jobs"):
            assert away.extensions["jobs"].run_pending() == 1
    finally:
        with away.app_context():
            db.engine.dispose()
    logged = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    assert logged == [("WARNING", "job title waits for the database: OperationalError", None)]
    assert state_of(app, cid) == ("pending", 0)
    fake.script("responses", Scenario(text="Refund times"))
    assert app.extensions["jobs"].run_pending() == 1
    assert title_of(client, owner, cid) == "Refund times"
