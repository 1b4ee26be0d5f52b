"""Compare through the API against the fake provider over real HTTP: both answers stored as
normal replies in their own pinned conversations, each side's version and model on the wire,
the turns readable and stoppable like any turn, the preference, the list, every 422, another
user's 404, the per-user chat limit (counted twice), and the page."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Comparison, Conversation, Message
from tests.factories import make_project, make_user
from tests.sse import parse_sse
from tools.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(
    openrouter=False, CHAT_CHECKPOINT_SECONDS=0.1, CHAT_HEARTBEAT_SECONDS=0.2
)

REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
V1 = "You are Ada's support bot."
V2 = "You are Ada's terse support bot."


@pytest.fixture
def project_id(app, client, owner):
    """v1 is production (gpt-4o-mini, the default); v2 the candidate on gpt-4.1-mini."""
    pid = make_project(app, owner, system_prompt=V1)
    v2 = {"content": V2, "candidate": True, "model": "gpt-4.1-mini", "temperature": 0.2}
    resp = client.post(f"/api/projects/{pid}/prompts", json=v2, headers=owner.headers)
    assert resp.status_code == 201
    return pid


def compare(client, user, project_id, message="How do refunds work?", left=None, right=None):
    body = {"message": message, "left": left or {"version": 1}, "right": right or {"version": 2}}
    return client.post(f"/api/projects/{project_id}/comparisons", json=body, headers=user.headers)


def wait_finished(client, user, comparison_id, timeout=10.0) -> dict:
    """Poll the comparison until neither answer is still being written."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/comparisons/{comparison_id}", headers=user.headers).get_json()
        statuses = {body[side]["reply"]["status"] for side in ("left", "right")}
        if not statuses & {"streaming", "stopping"}:
            return body
        assert time.monotonic() < deadline, statuses
        time.sleep(0.02)


def call_with(fake, instructions: str) -> dict:
    """The one request body the fake provider got with these instructions."""
    bodies = [c.json for c in fake.calls("responses") if c.json["instructions"] == instructions]
    assert len(bodies) == 1, [c.json["instructions"] for c in fake.calls("responses")]
    return bodies[0]


def counts(app) -> tuple[int, int, int]:
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Comparison, Conversation, Message)
        )


# --- starting a comparison ---------------------------------------------------------------------


def test_both_answers_are_normal_replies_in_their_own_pinned_conversations(
    app, client, owner, project_id, fake
):
    resp = compare(client, owner, project_id, right={"version": 2, "model": "gpt-4o"})
    assert resp.status_code == 201
    started = resp.get_json()
    assert started["message"] == "How do refunds work?"
    assert started["choice"] is None and started["chosen_at"] is None
    left, right = started["left"], started["right"]
    assert (left["version"], left["model"]) == (1, "gpt-4o-mini")
    assert (right["version"], right["model"]) == (2, "gpt-4o")
    assert left["conversation_id"] != right["conversation_id"]
    assert left["turn_id"] == left["reply"]["id"] and right["turn_id"] == right["reply"]["id"]

    done = wait_finished(client, owner, started["id"])
    for side, version in (("left", 1), ("right", 2)):
        reply = done[side]["reply"]
        assert reply["status"] == "complete"
        assert reply["content"] == "Hello from the fake model."
        assert reply["prompt_version"] == version
        assert "<p>Hello from the fake model.</p>" in reply["html"]

    # What crossed the wire: each side's instructions, model and settings.
    left_body, right_body = call_with(fake, V1), call_with(fake, V2)
    assert left_body["model"] == "gpt-4o-mini"
    assert right_body["model"] == "gpt-4o"  # the override, not v2's gpt-4.1-mini
    assert right_body["temperature"] == 0.2  # v2's own settings still apply
    for body in (left_body, right_body):
        assert body["input"] == [{"role": "user", "content": "How do refunds work?"}]

    # Each conversation is an ordinary, pinned one: the user's message, then the reply.
    for side, version, model in (("left", 1, None), ("right", 2, "gpt-4o")):
        cid = left["conversation_id"] if side == "left" else right["conversation_id"]
        conversation = client.get(f"/api/conversations/{cid}", headers=owner.headers).get_json()
        assert (conversation["pinned_version"], conversation["arm"]) == (version, "pinned")
        assert conversation["model"] == model
        assert conversation["title"].startswith("How do refunds work? (compare: v")
        page = client.get(f"/api/conversations/{cid}/messages", headers=owner.headers)
        roles = [(m["role"], m["content"]) for m in page.get_json()["data"]]
        assert roles == [("user", "How do refunds work?"), ("assistant", reply["content"])]


def test_one_version_under_two_models(app, client, owner, project_id, fake):
    resp = compare(client, owner, project_id, right={"version": 1, "model": "gpt-4o"})
    assert resp.status_code == 201
    done = wait_finished(client, owner, resp.get_json()["id"])
    assert {done[s]["reply"]["prompt_version"] for s in ("left", "right")} == {1}
    models = sorted(c.json["model"] for c in fake.calls("responses"))
    assert models == ["gpt-4o", "gpt-4o-mini"]


def test_naming_the_versions_own_model_is_no_override(app, client, owner, project_id, fake):
    resp = compare(
        client, owner, project_id, left={"version": 1, "model": "gpt-4o-mini"}, right=None
    )
    assert resp.status_code == 201
    cid = resp.get_json()["left"]["conversation_id"]
    wait_finished(client, owner, resp.get_json()["id"])
    conversation = client.get(f"/api/conversations/{cid}", headers=owner.headers).get_json()
    assert conversation["model"] is None


def test_both_answers_stream_at_once_and_can_be_read_as_turns(app, client, owner, project_id, fake):
    words = [f"w{i} " for i in range(12)]
    fake.script(
        "responses",
        Scenario(deltas=words, token_delay_ms=20),
        Scenario(deltas=words, token_delay_ms=20),
    )
    started = compare(client, owner, project_id).get_json()
    for side in ("left", "right"):
        resp = client.get(f"/api/turns/{started[side]['turn_id']}/events", headers=owner.headers)
        events, _ = parse_sse(resp.get_data(as_text=True))
        names = [name for name, _ in events]
        assert names[0] == "start" and names[-1] == "done", names
        text = "".join(data["text"] for name, data in events if name == "delta")
        assert text == "".join(words)
        assert events[0][1]["conversation"]["id"] == started[side]["conversation_id"]
        assert events[-1][1]["message"]["status"] == "complete"
    assert len(fake.calls("responses")) == 2


def test_both_answers_are_written_at_once_and_stop_ends_each(app, client, owner, project_id, fake):
    slow = Scenario(deltas=[f"w{i} " for i in range(500)], token_delay_ms=20)
    fake.script("responses", slow, slow)
    started = compare(client, owner, project_id).get_json()
    # Both have text stored (checkpoints) while both are still being written: neither waits
    # for the other.
    deadline = time.monotonic() + 10
    while True:
        now = client.get(f"/api/comparisons/{started['id']}", headers=owner.headers).get_json()
        replies = [now[side]["reply"] for side in ("left", "right")]
        assert all(r["status"] == "streaming" for r in replies), replies
        if all(r["content"] for r in replies):
            break
        assert time.monotonic() < deadline, replies
        time.sleep(0.02)
    for side in ("left", "right"):
        resp = client.post(f"/api/turns/{started[side]['turn_id']}/stop", headers=owner.headers)
        assert resp.status_code == 200
    done = wait_finished(client, owner, started["id"])
    for side in ("left", "right"):
        assert done[side]["reply"]["status"] == "incomplete"
        assert done[side]["reply"]["error"] == "Stopped before the reply was complete."


# --- bad input ---------------------------------------------------------------------------------

BAD = [
    ({"message": "  "}, "message"),
    ({"message": 5}, "message"),
    ({"left": {"version": 99}}, "left.version"),
    ({"left": {"version": "1"}}, "left.version"),
    ({"left": {"version": True}}, "left.version"),
    ({"left": {}}, "left.version"),
    ({"left": 1}, "left"),
    ({"right": None}, "right"),
    ({"right": {"version": 2, "model": "gpt-9"}}, "right.model"),
    ({"right": {"version": 2, "model": 4}}, "right.model"),
    # The same version under the same model twice: nothing to compare.
    ({"right": {"version": 1}}, "right"),
    ({"right": {"version": 1, "model": "gpt-4o-mini"}}, "right"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_input_is_422_and_stores_nothing(app, client, owner, project_id, fake, change, field):
    before = counts(app)
    body = {"message": "Hi", "left": {"version": 1}, "right": {"version": 2}, **change}
    resp = client.post(f"/api/projects/{project_id}/comparisons", json=body, headers=owner.headers)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]
    assert counts(app) == before
    assert fake.requests == []


def test_a_side_refused_after_the_other_was_written_leaves_nothing_behind(
    app, client, owner, project_id, fake
):
    """Both sides and the comparison are one transaction: the right side's longer prompt puts
    it over the input cap after the left side's conversation and rows were written."""
    message = "How do refunds work?"
    app.config["CHAT_INPUT_MAX_CHARS"] = len(V1) + len(message) + 2  # left fits, right not
    before = counts(app)
    resp = compare(client, owner, project_id, message=message)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["code"] == "input_too_long"
    assert counts(app) == before
    assert fake.requests == []


def test_every_problem_is_reported_at_once(app, client, owner, project_id):
    body = {"message": "", "left": {"version": 7}, "right": {"version": 2, "model": "x"}}
    resp = client.post(f"/api/projects/{project_id}/comparisons", json=body, headers=owner.headers)
    assert set(resp.get_json()["error"]["fields"]) == {"message", "left.version", "right.model"}


# --- the preference ----------------------------------------------------------------------------


def test_the_preference_is_stored_changeable_and_clearable(app, client, owner, project_id):
    cid = compare(client, owner, project_id).get_json()["id"]
    url = f"/api/comparisons/{cid}/preference"
    chosen = client.put(url, json={"choice": "left"}, headers=owner.headers).get_json()
    assert chosen["choice"] == "left" and chosen["chosen_at"] is not None
    assert client.put(url, json={"choice": "tie"}, headers=owner.headers).get_json()["choice"] == (
        "tie"
    )
    again = client.put(url, json={"choice": "right"}, headers=owner.headers).get_json()
    assert again["choice"] == "right"
    stored = client.get(f"/api/comparisons/{cid}", headers=owner.headers).get_json()
    assert stored["choice"] == "right"
    listed = client.get(f"/api/projects/{project_id}/comparisons", headers=owner.headers)
    assert listed.get_json()["data"][0]["choice"] == "right"
    cleared = client.put(url, json={"choice": None}, headers=owner.headers).get_json()
    assert cleared["choice"] is None and cleared["chosen_at"] is None
    wait_finished(client, owner, cid)


@pytest.mark.parametrize("body", [{}, {"choice": "best"}, {"choice": 1}, {"choice": ["left"]}])
def test_a_bad_preference_is_422(app, client, owner, project_id, body):
    cid = compare(client, owner, project_id).get_json()["id"]
    resp = client.put(f"/api/comparisons/{cid}/preference", json=body, headers=owner.headers)
    assert resp.status_code == 422
    assert "choice" in resp.get_json()["error"]["fields"]
    wait_finished(client, owner, cid)


# --- listing, ownership, deletion ---------------------------------------------------------------


def test_the_list_is_newest_first_and_pages(app, client, owner, project_id):
    ids = [compare(client, owner, project_id, f"Question {i}").get_json()["id"] for i in range(3)]
    url = f"/api/projects/{project_id}/comparisons"
    first = client.get(url + "?limit=2", headers=owner.headers).get_json()
    assert [c["id"] for c in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    rest = client.get(f"{url}?limit=2&before={ids[1]}", headers=owner.headers).get_json()
    assert [c["id"] for c in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert client.get(url + "?limit=x", headers=owner.headers).status_code == 422
    for cid in ids:
        wait_finished(client, owner, cid)


def test_another_users_comparison_is_404_everywhere(app, client, owner, project_id):
    cid = compare(client, owner, project_id).get_json()["id"]
    other = make_user(app, email="other@example.com")
    other_project = make_project(app, other, system_prompt="Mine.")
    assert client.get(f"/api/comparisons/{cid}", headers=other.headers).status_code == 404
    put = client.put(
        f"/api/comparisons/{cid}/preference", json={"choice": "left"}, headers=other.headers
    )
    assert put.status_code == 404
    assert compare(client, other, project_id).status_code == 404
    listed = client.get(f"/api/projects/{project_id}/comparisons", headers=other.headers)
    assert listed.status_code == 404
    # Their own project cannot name the owner's versions either: v2 is only the owner's.
    theirs = compare(client, other, other_project)
    assert theirs.status_code == 422 and "right.version" in theirs.get_json()["error"]["fields"]
    assert client.get(f"/api/comparisons/{cid}", headers=owner.headers).get_json()["choice"] is None
    wait_finished(client, owner, cid)


def test_deleting_a_sides_conversation_keeps_the_comparison(app, client, owner, project_id):
    started = compare(client, owner, project_id).get_json()
    wait_finished(client, owner, started["id"])
    conversation = f"/api/conversations/{started['right']['conversation_id']}"
    assert client.delete(conversation, headers=owner.headers).status_code == 204
    kept = client.get(f"/api/comparisons/{started['id']}", headers=owner.headers).get_json()
    assert kept["right"] == {
        "version": 2,
        "model": "gpt-4.1-mini",
        "conversation_id": None,
        "turn_id": None,
        "reply": None,
    }
    assert kept["left"]["reply"]["status"] == "complete"


# --- the rate limit ----------------------------------------------------------------------------


class TestRateLimit:
    @pytest.fixture(params=["memory://", REDIS])
    def config_overrides(self, request, fake):
        return fake.app_config(
            openrouter=False,
            RATELIMIT_ENABLED=True,
            RATELIMIT_STORAGE_URI=request.param,
            RATELIMIT_KEY_PREFIX=f"test-{uuid.uuid4().hex}",
            RATELIMIT_CHAT="3 per minute",
        )

    def test_a_comparison_counts_twice_against_the_chat_limit(self, app, client, owner, fake):
        pid = make_project(app, owner, system_prompt=V1)
        first = compare(client, owner, pid, right={"version": 1, "model": "gpt-4o"})
        assert first.status_code == 201
        wait_finished(client, owner, first.get_json()["id"])
        before = counts(app)
        refused = compare(client, owner, pid, right={"version": 1, "model": "gpt-4o"})
        assert refused.status_code == 429  # 2 + 2 > 3
        assert refused.get_json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
        assert counts(app) == before
        assert len(fake.calls("responses")) == 2


# --- the page ----------------------------------------------------------------------------------


def login(client, user):
    client.post("/login", data={"email": user.email, "password": user.password})


def test_the_page_lists_versions_models_and_recent_comparisons(app, client, owner, project_id):
    cid = compare(client, owner, project_id, "Compare <b>me</b>").get_json()["id"]
    client.put(f"/api/comparisons/{cid}/preference", json={"choice": "tie"}, headers=owner.headers)
    wait_finished(client, owner, cid)
    login(client, owner)
    html = client.get(f"/projects/{project_id}/compare").get_data(as_text=True)
    assert 'aria-current="page">Compare</a>' in html
    assert ">v1 · production" in html and ">v2 · candidate" in html
    assert '<option value="gpt-4o">gpt-4o</option>' in html
    # Production on the left, the candidate on the right, by default.
    assert '<option value="1" data-model="gpt-4o-mini" selected>' in html
    assert '<option value="2" data-model="gpt-4.1-mini" selected>' in html
    assert "Compare &lt;b&gt;me&lt;/b&gt;" in html
    assert ">Tie</span>" in html
    assert 'id="compare-result"' in html and 'data-comparison-id="" hidden' in html


def test_the_page_preselects_versions_from_the_query(app, client, owner, project_id):
    login(client, owner)
    html = client.get(f"/projects/{project_id}/compare?left=2&right=1").get_data(as_text=True)
    left = html.split('id="left-version"')[1].split("</select>")[0]
    right = html.split('id="right-version"')[1].split("</select>")[0]
    assert '<option value="2" data-model="gpt-4.1-mini" selected>' in left
    assert '<option value="1" data-model="gpt-4o-mini" selected>' in right


def test_the_page_shows_a_comparison_with_both_answers(app, client, owner, project_id):
    started = compare(client, owner, project_id, right={"version": 2, "model": "gpt-4o"})
    cid = started.get_json()["id"]
    client.put(f"/api/comparisons/{cid}/preference", json={"choice": "left"}, headers=owner.headers)
    done = wait_finished(client, owner, cid)
    login(client, owner)
    html = client.get(f"/projects/{project_id}/compare?c={cid}").get_data(as_text=True)
    assert f'data-comparison-id="{cid}"' in html
    assert html.count("<p>Hello from the fake model.</p>") == 2
    assert f"/projects/{project_id}?c={done['right']['conversation_id']}" in html
    assert 'data-choice="left"\n            aria-pressed="true"' in html
    # The pickers start on what was compared, the model override included.
    right = html.split('id="right-model"')[1].split("</select>")[0]
    assert '<option value="gpt-4o" selected>' in right


def test_the_page_is_404_for_another_users_comparison_or_project(app, client, owner, project_id):
    cid = compare(client, owner, project_id).get_json()["id"]
    wait_finished(client, owner, cid)
    other = make_user(app, email="other@example.com")
    other_project = make_project(app, other, system_prompt="Mine.")
    login(client, other)
    assert client.get(f"/projects/{project_id}/compare").status_code == 404
    assert client.get(f"/projects/{other_project}/compare?c={cid}").status_code == 404
    assert client.get(f"/projects/{other_project}/compare").status_code == 200


def test_a_project_without_versions_says_so(app, client, owner):
    pid = make_project(app, owner)
    login(client, owner)
    html = client.get(f"/projects/{pid}/compare").get_data(as_text=True)
    assert "Nothing to compare yet" in html and 'id="compare-form"' not in html
