"""Prompt lab: versions carry their model settings, a candidate is tried in pinned chats and on
a canary share of new conversations, then promoted. Chat goes over real HTTP to the fake
provider, so the settings are checked in the request bodies each provider receives."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select

from app.chat import start as start_turn
from app.config import ConfigError, load_config
from app.extensions import db
from app.models import Arm, Conversation, Message, User
from app.prompts.versions import canary_bucket
from tests.factories import make_project
from tools.fake_provider import Scenario

MODELS = [
    {"name": "gpt-4o-mini", "openai": "gpt-4o-mini", "openrouter": "openai/gpt-4o-mini",
     "input_per_million": 0.15, "output_per_million": 0.6},
    {"name": "gpt-4o", "openai": "gpt-4o", "openrouter": "openai/gpt-4o",
     "input_per_million": 2.5, "output_per_million": 10},
    {"name": "claude-haiku", "openai": None, "openrouter": "anthropic/claude-3.5-haiku"},
]  # fmt: skip


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()


@pytest.fixture
def config_overrides(fake):
    return fake.app_config(
        LLM_TIMEOUT_SECONDS=2.0,
        LLM_RETRY_MAX_WAIT_SECONDS=0.3,
        MODELS=load_config_models(MODELS),
    )


def load_config_models(models: list[dict]) -> tuple:
    env = {"MODELS": json.dumps(models)}
    return load_config_from(env)["MODELS"]


def load_config_from(env: dict, tmp=None) -> dict:
    return load_config(Path(tmp or tempfile.mkdtemp()), {"SECRET_KEY": "x" * 40}, env)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="Production prompt.")


def save(client, owner, project_id, content, **extra):
    return client.post(
        f"/api/projects/{project_id}/prompts", json={"content": content, **extra},
        headers=owner.headers,
    )  # fmt: skip


def api(client, owner, method, path, **kw):
    return client.open(path, method=method, headers=owner.headers, **kw)


def chat(client, owner, project_id, message="Hi", **body):
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": message, **body},
        headers=owner.headers,
    )  # fmt: skip
    return resp


def release(client, owner, project_id):
    return api(client, owner, "GET", f"/api/projects/{project_id}/prompts/release").get_json()


# --- the model allowlist -------------------------------------------------------------------------


def test_models_lists_the_allowlist_default_first(client, owner):
    data = api(client, owner, "GET", "/api/models").get_json()["data"]
    assert [m["name"] for m in data] == ["gpt-4o-mini", "gpt-4o", "claude-haiku"]
    assert [m["default"] for m in data] == [True, False, False]
    assert data[2]["openai"] is None and data[2]["openrouter"] == "anthropic/claude-3.5-haiku"
    assert data[1]["input_per_million"] == 2.5


def test_builtin_models_put_the_configured_default_first(tmp_path):
    names = [m["name"] for m in load_config_from({"OPENAI_MODEL": "gpt-4o"}, tmp_path)["MODELS"]]
    assert names[0] == "gpt-4o" and "gpt-4o-mini" in names
    custom = load_config_from(
        {"OPENAI_MODEL": "gpt-5-nano", "OPENROUTER_MODEL": "openai/gpt-5-nano"}, tmp_path
    )["MODELS"]
    assert custom[0] == {
        "name": "gpt-5-nano", "openai": "gpt-5-nano", "openrouter": "openai/gpt-5-nano",
        "input_per_million": None, "output_per_million": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[", "JSON list"),
        ("{}", "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ('[{"openai": "x"}]', "name must be"),
        ('[{"name": "a", "openai": null, "openrouter": null}]', "names no provider model"),
        ('[{"name": "a", "openai": "a", "colour": "red"}]', "unknown keys: colour"),
        ('[{"name": "a", "openai": "a", "input_per_million": -1}]', "price of 0 or more"),
        ('[{"name": "a", "openai": "a"}, {"name": "a", "openai": "b"}]', "names a model twice"),
    ],
)
def test_a_bad_models_setting_refuses_to_start(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message):
        load_config_from({"MODELS": raw}, tmp_path)


# --- a version is a whole configuration ----------------------------------------------------------


def test_a_first_version_gets_the_default_settings(app, client, owner):
    project_id = make_project(app, owner)
    body = save(client, owner, project_id, "Be brief.").get_json()
    assert (body["model"], body["temperature"], body["max_output_tokens"]) == (
        "gpt-4o-mini", None, app.config["LLM_MAX_OUTPUT_TOKENS"],
    )  # fmt: skip


def test_settings_version_together_with_the_text(client, owner, project_id):
    first = save(client, owner, project_id, "Be brief.", model="gpt-4o", temperature=0.3)
    assert first.status_code == 201
    assert (first.get_json()["model"], first.get_json()["temperature"]) == ("gpt-4o", 0.3)
    # Same text, another model: a new version. Same text and settings: nothing stored.
    only_model = save(client, owner, project_id, "Be brief.", model="gpt-4o-mini")
    assert only_model.status_code == 201 and only_model.get_json()["version"] == 3
    assert only_model.get_json()["temperature"] == 0.3  # kept from the version saved over
    same = save(client, owner, project_id, "Be brief.")
    assert (same.status_code, same.get_json()["created"], same.get_json()["version"]) == (
        200, False, 3,
    )  # fmt: skip
    reset = save(client, owner, project_id, "Be brief.", temperature=None)
    assert reset.status_code == 201 and reset.get_json()["temperature"] is None
    tokens = save(client, owner, project_id, "Be brief.", max_output_tokens=200)
    assert tokens.status_code == 201 and tokens.get_json()["max_output_tokens"] == 200


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"model": "gpt-9"}, "model"),
        ({"model": 4}, "model"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.01}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"max_output_tokens": 1025}, "max_output_tokens"),
        ({"max_output_tokens": "many"}, "max_output_tokens"),
        ({"candidate": True, "activate": True}, "candidate"),
    ],
)
def test_bad_settings_are_422_naming_the_field(client, owner, project_id, extra, field):
    resp = save(client, owner, project_id, "Be brief.", **extra)
    assert resp.status_code == 422
    assert field in resp.get_json()["error"]["fields"]


def test_chat_sends_the_versions_settings_to_each_provider(client, owner, project_id, fake):
    save(client, owner, project_id, "Be a pirate.", model="gpt-4o", temperature=0.3,
         max_output_tokens=200)  # fmt: skip
    assert chat(client, owner, project_id).status_code == 200
    body = fake.calls("responses")[0].json
    assert (body["model"], body["temperature"], body["max_output_tokens"]) == ("gpt-4o", 0.3, 200)
    assert body["instructions"].startswith("Be a pirate.")

    # OpenAI down before the first token: OpenRouter gets the same settings, in its own words.
    fake.reset()
    fake.script("responses", Scenario(status=500), Scenario(status=500))
    reply = chat(client, owner, project_id).get_json()["message"]
    body = fake.calls("chat")[0].json
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("openai/gpt-4o", 0.3, 200)
    assert (reply["provider"], reply["fallback"]) == ("openrouter", True)


def test_without_a_temperature_none_is_sent(client, owner, project_id, fake):
    save(client, owner, project_id, "Plain.")
    chat(client, owner, project_id)
    assert "temperature" not in fake.calls("responses")[0].json
    assert fake.calls("responses")[0].json["model"] == "gpt-4o-mini"


def test_a_model_only_openrouter_offers_is_sent_only_there(client, owner, project_id, fake):
    save(client, owner, project_id, "Be terse.", model="claude-haiku")
    reply = chat(client, owner, project_id).get_json()["message"]
    assert fake.calls("responses") == []
    assert fake.calls("chat")[0].json["model"] == "anthropic/claude-3.5-haiku"
    assert (reply["provider"], reply["fallback"]) == ("openrouter", False)


# --- pinned conversations ------------------------------------------------------------------------


def test_a_pinned_conversation_keeps_its_version(client, owner, project_id, fake):
    save(client, owner, project_id, "Version two.", model="gpt-4o")
    first = chat(client, owner, project_id, version=1).get_json()
    conversation_id = first["conversation_id"]
    assert first["message"]["prompt_version"] == 1
    assert fake.calls("responses")[0].json["instructions"].startswith("Production prompt.")
    assert fake.calls("responses")[0].json["model"] == "gpt-4o-mini"
    conversation = api(client, owner, "GET", f"/api/conversations/{conversation_id}").get_json()
    assert (conversation["pinned_version"], conversation["arm"]) == (1, "pinned")

    save(client, owner, project_id, "Version three.")  # production moves on
    again = chat(client, owner, project_id, conversation_id=conversation_id).get_json()
    assert again["message"]["prompt_version"] == 1
    regenerated = client.post(
        f"/api/conversations/{conversation_id}/regenerate", headers=owner.headers
    ).get_json()
    assert regenerated["message"]["prompt_version"] == 1
    unpinned = chat(client, owner, project_id).get_json()
    assert unpinned["message"]["prompt_version"] == 3


def test_pinning_refuses_what_it_cannot_pin(app, client, owner, project_id):
    other_project = make_project(app, owner, system_prompt="Elsewhere.")
    save(client, owner, other_project, "Elsewhere two.")
    assert chat(client, owner, project_id, version=2).status_code == 422  # only the other has v2
    started = chat(client, owner, project_id).get_json()
    resp = chat(client, owner, project_id, version=1, conversation_id=started["conversation_id"])
    assert resp.status_code == 422 and "version" in resp.get_json()["error"]["fields"]
    assert chat(client, owner, project_id, version="1").status_code == 422
    rows = {
        m["content"] for m in api(
            client, owner, "GET", f"/api/conversations/{started['conversation_id']}/messages"
        ).get_json()["data"]
    }  # fmt: skip
    assert rows == {"Hi", started["reply"]}  # the refused messages were not stored


# --- candidate, canary, promotion ----------------------------------------------------------------


def test_a_candidate_is_not_served_until_promoted(client, owner, project_id):
    saved = save(client, owner, project_id, "Candidate prompt.", candidate=True, model="gpt-4o")
    assert saved.status_code == 201
    assert (saved.get_json()["is_candidate"], saved.get_json()["is_active"]) == (True, False)
    state = release(client, owner, project_id)
    assert (state["production"]["version"], state["candidate"]["version"]) == (1, 2)
    assert chat(client, owner, project_id).get_json()["message"]["prompt_version"] == 1

    promoted = api(client, owner, "POST", f"/api/projects/{project_id}/prompts/candidate/promote")
    assert promoted.status_code == 200
    assert promoted.get_json()["production"]["version"] == 2
    assert promoted.get_json()["candidate"] is None
    assert chat(client, owner, project_id).get_json()["message"]["prompt_version"] == 2
    again = api(client, owner, "POST", f"/api/projects/{project_id}/prompts/candidate/promote")
    assert again.status_code == 409


def test_saving_a_candidate_starts_from_the_candidate(client, owner, project_id):
    save(client, owner, project_id, "Try this.", candidate=True, model="gpt-4o", temperature=0.9)
    same = save(client, owner, project_id, "Try this.", candidate=True)
    assert (same.status_code, same.get_json()["version"]) == (200, 2)
    tweaked = save(client, owner, project_id, "Try this instead.", candidate=True).get_json()
    assert (tweaked["version"], tweaked["model"], tweaked["temperature"]) == (3, "gpt-4o", 0.9)
    assert release(client, owner, project_id)["candidate"]["version"] == 3


def test_candidate_rules(client, owner, project_id):
    base = f"/api/projects/{project_id}/prompts"
    assert api(client, owner, "POST", f"{base}/1/candidate").status_code == 422  # production
    assert api(client, owner, "POST", f"{base}/9/candidate").status_code == 404
    canary = api(client, owner, "PUT", f"{base}/canary", json={"percent": 10})
    assert canary.status_code == 422  # no candidate yet
    save(client, owner, project_id, "Two.", activate=False)
    assert api(client, owner, "POST", f"{base}/2/candidate").get_json()["candidate"]["version"] == 2
    for bad in (-1, 101, "10", True, None):
        resp = api(client, owner, "PUT", f"{base}/canary", json={"percent": bad})
        assert resp.status_code == 422, bad
    assert api(client, owner, "PUT", f"{base}/canary", json={"percent": 25}).status_code == 200
    assert release(client, owner, project_id)["canary_percent"] == 25
    # Rolling forward to the candidate by hand is a promotion: the canary ends with it.
    api(client, owner, "POST", f"{base}/2/activate")
    state = release(client, owner, project_id)
    assert (state["production"]["version"], state["candidate"], state["canary_percent"]) == (
        2, None, 0,
    )  # fmt: skip


def test_discarding_ends_the_canary_but_canary_chats_keep_their_version(
    app, client, owner, project_id
):
    base = f"/api/projects/{project_id}/prompts"
    save(client, owner, project_id, "Candidate.", candidate=True)
    api(client, owner, "PUT", f"{base}/canary", json={"percent": 100})
    sent = chat(client, owner, project_id).get_json()
    assert sent["message"]["prompt_version"] == 2
    discarded = api(client, owner, "DELETE", f"{base}/candidate").get_json()
    assert (discarded["candidate"], discarded["canary_percent"]) == (None, 0)
    follow_up = chat(client, owner, project_id, conversation_id=sent["conversation_id"])
    assert follow_up.get_json()["message"]["prompt_version"] == 2  # sticky
    assert chat(client, owner, project_id).get_json()["message"]["prompt_version"] == 1


CANARY_CONVERSATIONS = 200  # through the service, ~11 ms each: the whole 1,000 took 11 s


def test_canary_buckets_are_deterministic_and_near_the_share():
    """1,000 new conversations (their ids) at a 10 % canary."""
    buckets = [canary_bucket(conversation_id, 7) for conversation_id in range(1, 1001)]
    assert buckets == [canary_bucket(conversation_id, 7) for conversation_id in range(1, 1001)]
    assert set(buckets) <= set(range(100))
    share = sum(b < 10 for b in buckets)
    # Binomial(1000, 0.1): mean 100, sd 9.5; a hash this far off would be broken.
    assert 70 <= share <= 130, share
    # Another candidate reshuffles who is in it.
    other = [canary_bucket(conversation_id, 8) < 10 for conversation_id in range(1, 1001)]
    assert other != [b < 10 for b in buckets]


def test_new_conversations_follow_their_bucket_and_keep_it(app, client, owner, project_id):
    """The app places each new conversation by ``canary_bucket`` (the split itself is checked
    on 1,000 conversation ids above), records the arm, and answers with the arm's version."""
    base = f"/api/projects/{project_id}/prompts"
    save(client, owner, project_id, "Candidate.", candidate=True)
    api(client, owner, "PUT", f"{base}/canary", json={"percent": 10})
    with app.app_context():
        user = db.session.get(User, owner.id)
        for n in range(CANARY_CONVERSATIONS):
            # The service alone stores the message and the reply row; no provider is called.
            start_turn.send(user=user, project_id=project_id, message=f"Hello {n}")
        rows = db.session.execute(
            select(Conversation.id, Conversation.arm, Conversation.prompt_version_id).where(
                Conversation.project_id == project_id
            )
        ).all()
        candidate_id = release(client, owner, project_id)["candidate"]["id"]
        replies = dict(
            db.session.execute(
                select(Message.conversation_id, Message.prompt_version_id).where(
                    Message.role == "assistant"
                )
            ).all()
        )
    assert len(rows) == CANARY_CONVERSATIONS
    in_canary = [r for r in rows if r.arm == Arm.CANDIDATE]
    # Binomial(200, 0.1): mean 20, sd 4.2.
    assert 8 <= len(in_canary) <= 32, len(in_canary)
    for row in rows:
        expected = canary_bucket(row.id, candidate_id) < 10
        assert (row.arm == Arm.CANDIDATE) is expected
        assert row.arm in (Arm.CANDIDATE, Arm.PRODUCTION)
        # The reply was produced by the arm's version.
        assert (replies[row.id] == candidate_id) is expected


def test_pinned_conversations_are_outside_the_canary(client, owner, project_id):
    base = f"/api/projects/{project_id}/prompts"
    save(client, owner, project_id, "Candidate.", candidate=True)
    api(client, owner, "PUT", f"{base}/canary", json={"percent": 100})
    pinned = chat(client, owner, project_id, version=1).get_json()
    assert pinned["message"]["prompt_version"] == 1


# --- pages ---------------------------------------------------------------------------------------


@pytest.fixture
def logged_in(client, owner):
    client.post("/login", data={"email": owner.email, "password": owner.password})


def test_the_editor_saves_settings_live_or_as_candidate(client, logged_in, project_id):
    url = f"/projects/{project_id}/prompts"
    page = client.get(url).get_data(as_text=True)
    picker = page[page.index('<select id="model"') : page.index("</select>")]
    assert re.findall(r'value="([^"]+)"', picker) == ["gpt-4o-mini", "gpt-4o", "claude-haiku"]
    form = {"content": "Try me.", "model": "gpt-4o", "temperature": "0.5",
            "max_output_tokens": "300", "save_candidate": "Save as candidate"}  # fmt: skip
    resp = client.post(url, data=form, follow_redirects=True)
    page = resp.get_data(as_text=True)
    assert "Saved as version 2, the candidate" in page
    assert "gpt-4o · temperature 0.5 · 300 tokens max" in page
    assert 'id="chat-candidate"' in page and f"/projects/{project_id}?version=2" in page
    assert f"/projects/{project_id}/compare?left=2&amp;right=1" in page

    live = {**form, "content": "Live now.", "temperature": "", "save_live": "Save and make live"}
    del live["save_candidate"]
    page = client.post(url, data=live, follow_redirects=True).get_data(as_text=True)
    assert "Saved as version 3; it is now live." in page


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"temperature": "warm"}, "Not a valid float value"),
        ({"temperature": "3"}, "Use a temperature from 0 to 2."),
        ({"model": "gpt-9"}, "Choose one of the models offered"),
        ({"max_output_tokens": "4"}, "Use from 16 to"),
    ],
)
def test_the_editor_shows_setting_errors(client, logged_in, project_id, change, error):
    form = {"content": "Try me.", "model": "gpt-4o", "max_output_tokens": "300", **change}
    resp = client.post(f"/projects/{project_id}/prompts", data=form)
    assert resp.status_code == 422
    assert error in resp.get_data(as_text=True)


def test_release_controls_on_the_prompt_tab(client, logged_in, project_id):
    url = f"/projects/{project_id}/prompts"
    client.post(url, data={"content": "Two.", "save_candidate": "Save as candidate"})
    bad = client.post(f"{url}/canary", data={"percent": "101"})
    assert bad.status_code == 422 and "Use a share from 0 to 100." in bad.get_data(as_text=True)
    page = client.post(f"{url}/canary", data={"percent": "10"}, follow_redirects=True)
    assert "10 % of new conversations now go to the candidate." in page.get_data(as_text=True)
    assert "candidate · 10 %" in page.get_data(as_text=True)
    page = client.post(f"{url}/candidate/discard", follow_redirects=True).get_data(as_text=True)
    assert "The candidate is discarded" in page and 'id="promote"' not in page
    client.post(f"{url}/2/candidate")
    page = client.post(f"{url}/candidate/promote", follow_redirects=True).get_data(as_text=True)
    assert "Version 2 is promoted: it is now live." in page
    page = client.post(f"{url}/1/candidate", follow_redirects=True).get_data(as_text=True)
    assert "Version 1 is the candidate; production is unchanged." in page  # v1: not live now
    refused = client.post(f"{url}/2/candidate", follow_redirects=True).get_data(as_text=True)
    assert "Version 2 is production already." in refused


def test_the_diff_page_shows_setting_changes(client, logged_in, owner, project_id):
    save(client, owner, project_id, "Production prompt.", model="gpt-4o", temperature=1)
    page = client.get(f"/projects/{project_id}/prompts/diff?from=1&to=2").get_data(as_text=True)
    assert 'id="settings-diff"' in page
    assert '<del class="diff-del">gpt-4o-mini</del>' in page
    assert '<ins class="diff-add">gpt-4o</ins>' in page
    assert '<del class="diff-del">provider default</del>' in page
    assert "The two versions have the same text." in page
    diff = api(client, owner, "GET", f"/api/projects/{project_id}/prompts/diff?from=1&to=2")
    assert diff.get_json()["settings"] == [
        {"name": "model", "label": "Model", "from": "gpt-4o-mini", "to": "gpt-4o"},
        {"name": "temperature", "label": "Temperature", "from": None, "to": 1.0},
        {"name": "labels", "label": "Labels", "from": [], "to": ["production"]},
    ]


def test_new_chat_with_a_version_page(client, logged_in, owner, project_id):
    save(client, owner, project_id, "Two.")
    page = client.get(f"/projects/{project_id}?version=1").get_data(as_text=True)
    assert 'data-pin-version="1"' in page and "Pinned to v1" in page
    assert client.get(f"/projects/{project_id}?version=7").status_code == 404
    chat(client, owner, project_id, version=1)
    listed = client.get(f"/projects/{project_id}").get_data(as_text=True)
    assert 'class="badge pin pin-pinned"' in listed
