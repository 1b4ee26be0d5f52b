"""Conversation titles written by the model (``POST /api/conversations/<id>/title``): one short
call with the first exchange, over real HTTP to the fake provider; the automatic title (the cut
first message) stays when the user renamed it, the offline model answers, the provider fails or
no reply is complete yet, and a rename during the call wins."""

import threading

import pytest

from app.chat.titles import INSTRUCTIONS, clean
from tests.factories import make_project, make_user
from tests.fake_provider import Scenario

pytestmark = pytest.mark.use_fake(openrouter=False, LLM_TIMEOUT_SECONDS=2, CHAT_TITLES=True)
QUESTION = "How long do refunds take when the parcel arrives damaged and I paid by card?"


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are a support bot.")


def start(client, owner, project_id, message=QUESTION) -> int:
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": message}, headers=owner.headers
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["conversation_id"]


def suggest(client, owner, cid):
    return client.post(f"/api/conversations/{cid}/title", headers=owner.headers)


def test_the_model_titles_the_conversation_after_its_first_reply(client, owner, project_id, fake):
    fake.script("responses", Scenario(text="Refunds take thirty days."))
    cid = start(client, owner, project_id)
    automatic = client.get(f"/api/conversations/{cid}", headers=owner.headers).get_json()["title"]
    assert automatic == QUESTION[:59].rstrip() + "…"  # cut at 60 characters
    fake.script("responses", Scenario(text='"Damaged parcel refunds."'))
    resp = suggest(client, owner, cid)
    assert resp.status_code == 200
    assert resp.get_json()["title"] == "Damaged parcel refunds"
    # One short call: the instructions, the first exchange, a small token budget.
    call = fake.calls("responses")[-1].json
    assert call["instructions"] == INSTRUCTIONS
    assert call["input"] == [
        {"role": "user", "content": f"User: {QUESTION}\n\nAssistant: Refunds take thirty days."}
    ]
    assert call["max_output_tokens"] == 64
    assert client.get(f"/api/conversations/{cid}", headers=owner.headers).get_json()["title"] == (
        "Damaged parcel refunds"
    )
    # Once titled, asking again calls nobody.
    calls = len(fake.calls("responses"))
    assert suggest(client, owner, cid).get_json()["title"] == "Damaged parcel refunds"
    assert len(fake.calls("responses")) == calls


def test_a_renamed_conversation_keeps_its_name(client, owner, project_id, fake):
    cid = start(client, owner, project_id)
    client.patch(f"/api/conversations/{cid}", json={"title": "Mine"}, headers=owner.headers)
    calls = len(fake.calls("responses"))
    assert suggest(client, owner, cid).get_json()["title"] == "Mine"
    assert len(fake.calls("responses")) == calls


def test_no_title_call_before_a_complete_reply(client, owner, project_id, fake):
    down = Scenario(status=401, error="invalid_api_key")
    fake.script("responses", down)
    resp = client.post(
        f"/api/projects/{project_id}/chat", json={"message": "Hi"}, headers=owner.headers
    )
    assert resp.status_code == 502
    cid = client.get(f"/api/projects/{project_id}/conversations", headers=owner.headers).get_json()[
        "data"
    ][0]["id"]
    calls = len(fake.calls("responses"))
    assert suggest(client, owner, cid).get_json()["title"] == "Hi"
    assert len(fake.calls("responses")) == calls


def test_a_provider_failure_keeps_the_automatic_title(client, owner, project_id, fake):
    cid = start(client, owner, project_id, "Short question")
    fake.script("responses", Scenario(status=401, error="invalid_api_key"))
    resp = suggest(client, owner, cid)
    assert resp.status_code == 200
    assert resp.get_json()["title"] == "Short question"


@pytest.mark.use_fake(openai=False, openrouter=False, CHAT_TITLES=True)
def test_the_offline_model_keeps_the_automatic_title(client, owner, project_id, fake):
    cid = start(client, owner, project_id, "Short question")
    assert suggest(client, owner, cid).get_json()["title"] == "Short question"
    assert fake.requests == []


@pytest.mark.use_fake(openrouter=False, CHAT_TITLES=False)
def test_titles_turned_off_keep_the_automatic_title(client, owner, project_id, fake):
    cid = start(client, owner, project_id, "Short question")
    assert suggest(client, owner, cid).get_json()["title"] == "Short question"
    assert len(fake.calls("responses")) == 1  # the reply only


def test_a_rename_during_the_call_wins(app, client, owner, project_id, fake):
    cid = start(client, owner, project_id, "Short question")
    fake.script("responses", Scenario(text="Model title", ttft_ms=600))
    answers = []
    worker = threading.Thread(
        target=lambda: answers.append(suggest(app.test_client(), owner, cid).get_json())
    )
    worker.start()
    for _ in range(200):  # the call is out
        if len(fake.calls("responses")) == 2:
            break
        threading.Event().wait(0.01)
    rename = {"title": "Mine"}
    renamed = client.patch(f"/api/conversations/{cid}", json=rename, headers=owner.headers)
    assert renamed.status_code == 200
    worker.join()
    assert answers[0]["title"] == "Mine"
    assert client.get(f"/api/conversations/{cid}", headers=owner.headers).get_json()["title"] == (
        "Mine"
    )


def test_another_users_conversation_is_404(app, client, owner, project_id):
    cid = start(client, owner, project_id)
    other = make_user(app, email="eve@example.com")
    assert client.post(f"/api/conversations/{cid}/title", headers=other.headers).status_code == 404


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
