"""Spending budgets and the input cap per turn (issue 26, finding 4), through the fake provider
over real HTTP: a user over a day's or a month's budget is refused with 429 `budget_exceeded`
before anything is stored or sent (the fake records no request), on every way in (a message,
Regenerate, an edit, Compare, a title); another user is unaffected; the spend and what is left
are shown (``GET /api/usage``, the dashboard, the chat page); deleting what was paid for does
not give the money back; a reply cut short is charged an estimate, a refused one nothing, and a
reply stored twice or from the spool is charged once. A turn over ``CHAT_INPUT_MAX_CHARS`` is
refused with 422 `input_too_long` naming the cap, before the provider is called."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app import usage
from app.catalog import ModelChoice
from app.chat import replies
from app.chat import start as start_turn
from app.config import ConfigError, load_config
from app.extensions import db
from app.models import Conversation, Message, MessageStatus, UsageDay, User
from tests.factories import make_project, make_user
from tests.test_openapi import CheckedClient, Validator
from tools.fake_provider import Scenario

# gpt-4o-mini, the default model: $0.15 per million tokens in, $0.60 out. The fake counts a
# token per word, so one "Hi" turn costs a few millionths of a dollar, and the budget below is
# spent by the first turn of WORDS.
BUDGET = 0.00001
WORDS = " ".join(["word"] * 100)  # 100 tokens in: $0.000015 with the system prompt and reply

pytestmark = pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=BUDGET)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You help.")


@pytest.fixture
def other(app):
    return make_user(app, email="bob@example.com")


def send(client, user, project_id, message="Hi", **body):
    return client.post(
        f"/api/projects/{project_id}/chat", json={"message": message, **body}, headers=user.headers
    )


def spend_it(client, user, project_id) -> int:
    """One turn that uses the whole budget; returns its conversation."""
    resp = send(client, user, project_id, WORDS)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["conversation_id"]


def messages_stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Message))


def spending(client, user) -> dict:
    resp = client.get("/api/usage", headers=user.headers)
    assert resp.status_code == 200
    return resp.get_json()


def next_midnight() -> datetime:
    today = datetime.now(UTC).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


# --- the budget -----------------------------------------------------------------------------------


def test_a_user_over_budget_is_refused_before_the_provider_is_called(
    app, client, owner, project_id, fake
):
    cid = spend_it(client, owner, project_id)
    calls, stored = len(fake.requests), messages_stored(app)

    resp = send(client, owner, project_id, "And now?", conversation_id=cid, stream=True)

    assert resp.status_code == 429 and resp.mimetype == "application/json"
    error = resp.get_json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "today's model budget" in error["message"] and "00:00 UTC" in error["message"]
    budget = error["budget"]
    assert budget["period"] == "day" and budget["limit_usd"] == BUDGET
    assert budget["spent_usd"] >= BUDGET
    assert datetime.fromisoformat(budget["resets_at"]) == next_midnight()
    wait = int(resp.headers["Retry-After"])
    assert 0 < wait <= 86400
    assert abs((next_midnight() - datetime.now(UTC)).total_seconds() - wait) < 5
    assert len(fake.requests) == calls  # nothing was sent
    assert messages_stored(app) == stored  # nothing was stored


def test_every_way_to_call_a_model_is_refused_over_budget(app, client, owner, project_id, fake):
    cid = spend_it(client, owner, project_id)
    first_message = client.get(
        f"/api/conversations/{cid}/messages", headers=owner.headers
    ).get_json()["data"][0]["id"]
    resp = client.post(
        f"/api/projects/{project_id}/prompts",
        json={"content": "You help tersely.", "model": "gpt-4o"},
        headers=owner.headers,
    )
    assert resp.status_code == 201
    calls, stored = len(fake.requests), messages_stored(app)

    answers = [
        send(client, owner, project_id, "A new conversation"),
        client.post(
            "/api/chat", json={"projectId": project_id, "message": "Hi"}, headers=owner.headers
        ),
        client.post(f"/api/conversations/{cid}/regenerate", headers=owner.headers),
        client.post(
            f"/api/messages/{first_message}/edit", json={"message": "Edited"}, headers=owner.headers
        ),
        client.post(
            f"/api/projects/{project_id}/comparisons",
            json={"message": "Which?", "left": {"version": 1}, "right": {"version": 2}},
            headers=owner.headers,
        ),
    ]

    assert [r.status_code for r in answers] == [429] * 5
    assert {r.get_json()["error"]["code"] for r in answers} == {"budget_exceeded"}
    assert len(fake.requests) == calls
    assert messages_stored(app) == stored
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1


def test_a_title_is_not_asked_for_over_budget(app, client, owner, project_id, fake):
    app.config["CHAT_TITLES"] = True
    cid = spend_it(client, owner, project_id)
    calls = len(fake.requests)
    resp = client.post(f"/api/conversations/{cid}/title", headers=owner.headers)
    assert resp.status_code == 200
    assert resp.get_json()["title"] == WORDS[:59].rstrip() + "…"  # the automatic title stays
    assert len(fake.requests) == calls


def test_another_user_is_unaffected(app, client, owner, other, project_id, fake):
    spend_it(client, owner, project_id)
    assert send(client, owner, project_id).status_code == 429
    theirs = make_project(app, other, system_prompt="You help.")
    calls = len(fake.requests)

    resp = send(client, other, theirs, stream=True)

    assert resp.status_code == 200 and "event: done" in resp.get_data(as_text=True)
    assert len(fake.requests) == calls + 1
    assert spending(client, other)["day"]["spent_usd"] < BUDGET
    assert send(client, owner, project_id).status_code == 429  # still


def test_deleting_what_was_paid_for_gives_nothing_back(app, client, owner, project_id):
    cid = spend_it(client, owner, project_id)
    assert client.delete(f"/api/conversations/{cid}", headers=owner.headers).status_code == 204
    assert send(client, owner, project_id).status_code == 429
    assert client.delete(f"/api/projects/{project_id}", headers=owner.headers).status_code == 204
    again = make_project(app, owner, name="Another", system_prompt="You help.")
    assert send(client, owner, again).status_code == 429


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0, USER_BUDGET_USD_MONTH=BUDGET)
def test_the_monthly_budget_resets_on_the_first(client, owner, project_id, fake):
    spend_it(client, owner, project_id)
    error = send(client, owner, project_id).get_json()["error"]
    assert error["code"] == "budget_exceeded" and error["budget"]["period"] == "month"
    assert "this month's model budget" in error["message"]
    resets = datetime.fromisoformat(error["budget"]["resets_at"])
    today = datetime.now(UTC).date()
    assert resets.date() == (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    assert (resets.hour, resets.minute, resets.tzinfo) == (0, 0, UTC)


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=BUDGET, USER_BUDGET_USD_MONTH=BUDGET)
def test_with_both_used_up_the_wait_is_the_months(client, owner, project_id):
    spend_it(client, owner, project_id)
    resp = send(client, owner, project_id)
    assert resp.get_json()["error"]["budget"]["period"] == "month"
    first = (datetime.now(UTC).date().replace(day=1) + timedelta(days=32)).replace(day=1)
    until = datetime.combine(first, datetime.min.time(), tzinfo=UTC) - datetime.now(UTC)
    assert abs(int(resp.headers["Retry-After"]) - until.total_seconds()) < 5


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0, USER_BUDGET_USD_MONTH=0)
def test_no_cap_means_no_refusal(client, owner, project_id):
    for _ in range(3):
        assert send(client, owner, project_id, WORDS).status_code == 200
    shown = spending(client, owner)
    assert shown["day"]["limit_usd"] is None and shown["day"]["remaining_usd"] is None
    assert shown["month"]["spent_usd"] > 3 * BUDGET


# --- what is shown --------------------------------------------------------------------------------


def test_the_spend_and_what_is_left_are_shown(app, client, owner, other, project_id):
    before = spending(client, owner)
    assert before["day"] == {
        "spent_usd": 0.0,
        "limit_usd": BUDGET,
        "remaining_usd": BUDGET,
        "resets_at": next_midnight().isoformat(),
    }
    assert before["month"]["limit_usd"] == 50.0 and before["input_max_chars"] == 120_000

    send(client, owner, project_id)  # "You help." + "Hi": 3 tokens in (a word each), 5 out

    after = spending(client, owner)
    cost = (3 * 0.15 + 5 * 0.60) / 1_000_000
    assert after["day"]["spent_usd"] == pytest.approx(cost)
    assert after["day"]["remaining_usd"] == pytest.approx(BUDGET - cost)
    assert after["month"]["spent_usd"] == pytest.approx(cost)
    assert spending(client, other)["day"]["spent_usd"] == 0.0


def test_the_pages_show_the_budget_left_and_when_it_is_used_up(app, client, auth, project_id):
    auth.login()
    page = client.get("/").get_data(as_text=True)
    assert "$0.00001 of $0.00001 model budget left today" in page
    assert "$50.00 of $50.00 model budget left this month" in page
    spend_it_with_the_session(client, project_id)
    for url in ("/", f"/projects/{project_id}"):
        page = client.get(url).get_data(as_text=True)
        assert "The model budget for today is used up" in page, url
        assert "chat resumes <time" in page and "at 00:00 UTC" in page


def spend_it_with_the_session(client, project_id):
    resp = client.post(f"/api/projects/{project_id}/chat", json={"message": WORDS})
    assert resp.status_code == 200


def test_the_refusals_match_the_api_document(client, owner, project_id):
    api = CheckedClient(client, Validator(), headers=owner.headers)
    assert api("get", "/api/usage").status_code == 200
    path = "/api/projects/{project_id}/chat"
    assert api("post", path, {"project_id": project_id}, json={"message": WORDS}).status_code == 200
    assert api("post", path, {"project_id": project_id}, json={"message": "Hi"}).status_code == 429


# --- what is charged ------------------------------------------------------------------------------


def ledger(app) -> list[tuple]:
    """The ledger per user, project and model (summed over the rows' shards)."""
    with app.app_context():
        key = (UsageDay.user_id, UsageDay.project_id, UsageDay.model)
        rows = db.session.execute(
            select(
                *key,
                func.sum(UsageDay.calls),
                func.sum(UsageDay.tokens_in),
                func.sum(UsageDay.tokens_out),
            )
            .group_by(*key)
            .order_by(UsageDay.user_id, UsageDay.model)
        ).all()
        return [tuple(r) for r in rows]


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0)
def test_replies_are_charged_at_the_price_of_the_model_asked_for(app, client, owner, project_id):
    send(client, owner, project_id)
    resp = client.post(
        f"/api/projects/{project_id}/comparisons",
        json={"message": "Hi", "left": {"version": 1}, "right": {"version": 1, "model": "gpt-4o"}},
        headers=owner.headers,
    )
    assert resp.status_code == 201
    for side in ("left", "right"):
        turn = resp.get_json()[side]["turn_id"]
        assert "event: done" in client.get(
            f"/api/turns/{turn}/events", headers=owner.headers
        ).get_data(as_text=True)
    # The chat reply and the left side on gpt-4o-mini; the right side on gpt-4o.
    assert ledger(app) == [
        (owner.id, project_id, "gpt-4o", 1, 3, 5),
        (owner.id, project_id, "gpt-4o-mini", 2, 6, 10),
    ]
    day = spending(client, owner)["day"]["spent_usd"]
    assert day == pytest.approx((6 * 0.15 + 10 * 0.60 + 3 * 2.50 + 5 * 10.00) / 1_000_000)


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0)
def test_a_model_removed_from_the_list_is_charged_at_the_dearest_price(
    app, client, owner, project_id
):
    body = {"content": "You help.", "model": "gpt-4o"}
    assert (
        client.post(f"/api/projects/{project_id}/prompts", json=body, **auth(owner)).status_code
        == 201
    )
    app.config["MODELS"] = tuple(m for m in app.config["MODELS"] if m["name"] != "gpt-4o")
    assert send(client, owner, project_id).status_code == 200  # still served, as before
    assert ledger(app) == [(owner.id, project_id, "gpt-4o", 1, 3, 5)]
    dearest = (3 * 0.40 + 5 * 1.60) / 1_000_000  # gpt-4.1-mini's prices, the highest left
    assert spending(client, owner)["day"]["spent_usd"] == pytest.approx(dearest)


def auth(user) -> dict:
    return {"headers": user.headers}


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0)
def test_a_reply_cut_short_is_charged_an_estimate_and_a_refused_one_nothing(
    app, client, owner, project_id, fake
):
    fake.script("responses", Scenario(status=400, error="model_not_found"))
    assert send(client, owner, project_id).status_code == 502
    assert ledger(app) == []
    # The provider took the request and sent text, then the stream broke: no usage arrives,
    # but the provider bills it. Sent: "You help." + "Hi" (11 characters); received "one two ".
    fake.script("responses", Scenario(deltas=["one ", "two ", "three"], cut_after=2))
    resp = send(client, owner, project_id, stream=True)
    assert "event: error" in resp.get_data(as_text=True)
    assert ledger(app) == [(owner.id, project_id, "gpt-4o-mini", 1, 3, 2)]


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0)
def test_a_reply_is_charged_once_however_often_it_is_stored(app, owner, project_id):
    with app.app_context():
        user = db.session.get(User, owner.id)
        turn = start_turn.send(user=user, project_id=project_id, message="Hi")
        model = ModelChoice("gpt-4o-mini", "gpt-4o-mini", None, 0.15, 0.60)
        charge = usage.charge_for(
            user_id=owner.id, project_id=project_id, model=model, tokens_in=7, tokens_out=3
        )
        values = {"content": "done", "status": MessageStatus.COMPLETE}
        replies.spool().put(turn.reply_id, turn.conversation_id, values, charge)
        app.extensions["maintenance"].run_now()  # the spool: stored and charged
        assert replies.finish(turn.reply_id, turn.conversation_id, values, charge) is True
        replies.spool().put(turn.reply_id, turn.conversation_id, values, charge)
    app.extensions["maintenance"].run_now()
    assert ledger(app) == [(owner.id, project_id, "gpt-4o-mini", 1, 7, 3)]


# --- the input cap --------------------------------------------------------------------------------


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0, CHAT_INPUT_MAX_CHARS=1000)
def test_a_turn_over_the_input_cap_is_refused_before_the_provider(
    app, client, owner, other, project_id, fake
):
    long = "x" * 400
    cid = send(client, owner, project_id, long).get_json()["conversation_id"]
    # system 9 + 400 + reply 26 + 400 = 835: still under the cap
    assert send(client, owner, project_id, long, conversation_id=cid).status_code == 200
    calls, stored = len(fake.requests), messages_stored(app)

    resp = send(client, owner, project_id, long, conversation_id=cid, stream=True)

    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "input_too_long"
    assert "1,261 characters" in error["message"] and "the limit is 1,000" in error["message"]
    assert error["fields"]["message"] == error["message"]
    assert len(fake.requests) == calls
    assert messages_stored(app) == stored
    regenerate = client.post(f"/api/conversations/{cid}/regenerate", headers=owner.headers)
    assert regenerate.status_code == 200  # the history up to the last message still fits
    # A new conversation, and another user, are unaffected.
    assert send(client, owner, project_id, long).status_code == 200
    theirs = make_project(app, other, system_prompt="You help.")
    assert send(client, other, theirs, long).status_code == 200


@pytest.mark.use_fake(openrouter=False, USER_BUDGET_USD_DAY=0, CHAT_INPUT_MAX_CHARS=1000)
def test_compare_stores_nothing_when_one_side_is_over_the_input_cap(
    app, client, owner, project_id, fake
):
    resp = client.post(
        f"/api/projects/{project_id}/prompts", json={"content": "y" * 995}, headers=owner.headers
    )
    assert resp.status_code == 201
    stored = messages_stored(app)
    resp = client.post(
        f"/api/projects/{project_id}/comparisons",
        json={"message": "Which one?", "left": {"version": 1}, "right": {"version": 2}},
        headers=owner.headers,
    )
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "input_too_long"
    assert messages_stored(app) == stored
    assert fake.requests == []
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversation)) == 0


# --- pure parts and settings ----------------------------------------------------------------------


def test_periods_reset_at_utc_midnight_and_on_the_first(app):
    with app.app_context():
        day, month = usage.periods(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert (day.start, day.resets_at) == (date(2026, 12, 31), datetime(2027, 1, 1, tzinfo=UTC))
    assert (month.start, month.resets_at) == (date(2026, 12, 1), datetime(2027, 1, 1, tzinfo=UTC))
    assert (day.limit_usd, month.limit_usd) == (BUDGET, 50.0)


def test_estimates_and_money():
    assert [usage.estimate_tokens(n) for n in (0, 1, 4, 5, 400)] == [0, 1, 1, 2, 100]
    assert [usage.usd(x) for x in (0, 0.00001, 0.00012, 0.5, 1234.5)] == [
        "$0.00",
        "$0.00001",
        "$0.00012",
        "$0.50",
        "$1,234.50",
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("USER_BUDGET_USD_DAY", "-1"),
        ("USER_BUDGET_USD_DAY", "nan"),
        ("USER_BUDGET_USD_MONTH", "inf"),
        ("CHAT_INPUT_MAX_CHARS", "-1"),
    ],
)
def test_a_negative_or_endless_cap_stops_the_app(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        load_config(tmp_path, env={key: value, "SECRET_KEY": "x" * 40})


def test_the_defaults_cap_spending(tmp_path):
    config = load_config(tmp_path, env={"SECRET_KEY": "x" * 40})
    assert (config["USER_BUDGET_USD_DAY"], config["USER_BUDGET_USD_MONTH"]) == (5.0, 50.0)
    assert config["CHAT_INPUT_MAX_CHARS"] == 120_000
