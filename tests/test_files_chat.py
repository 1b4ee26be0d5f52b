"""Marked project files go into the chat turn's instructions, within a budget, on both
providers; the reply records which files were included."""

from __future__ import annotations

import pytest

from tests.factories import make_project, wait_extracted
from tests.filehelp import upload
from tools.pdfs import text_pdf

pytestmark = pytest.mark.use_fake(openai=False, LLM_RETRY_MAX_WAIT_SECONDS=0.1)


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, system_prompt="You are the docs bot.")


def add_file(client, owner, project_id, name, content, *, use=True) -> int:
    file_id = upload(client, owner, project_id, name, content).get_json()["id"]
    wait_extracted(client, owner.headers, project_id, file_id)
    if use:
        resp = client.patch(
            f"/api/projects/{project_id}/files/{file_id}",
            json={"use_in_chat": True},
            headers=owner.headers,
        )
        assert resp.status_code == 200, resp.get_json()
    return file_id


def chat(client, owner, project_id, message="What is the refund window?", **body):
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": message, **body},
        headers=owner.headers,
    )
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def use_openai(app):
    from app.llm import close_client

    app.config["OPENAI_API_KEY"] = "test-openai-key"
    close_client(app)


def test_marked_file_text_is_sent_and_unmarked_is_not(app, client, owner, project_id, fake):
    marked = add_file(client, owner, project_id, "policy.pdf", text_pdf("Refunds within 30 days"))
    add_file(client, owner, project_id, "secret.txt", b"UNMARKED-SECRET", use=False)
    use_openai(app)
    body = chat(client, owner, project_id)

    (call,) = fake.calls("responses")
    instructions = call.json["instructions"]
    assert instructions.startswith("You are the docs bot.")
    assert "----- BEGIN FILE: policy.pdf -----\nRefunds within 30 days\n" in instructions
    assert "----- END FILE: policy.pdf -----" in instructions
    assert "UNMARKED-SECRET" not in instructions
    assert "UNMARKED-SECRET" not in str(call.json["input"])
    files = body["message"]["context_files"]
    assert files == [
        {
            "id": marked,
            "name": "policy.pdf",
            "chars": 22,
            "total_chars": 22,
            "truncated": False,
            "included": True,
        }
    ]


def test_openrouter_gets_the_same_context_on_fallback(app, client, owner, project_id, fake):
    add_file(client, owner, project_id, "faq.md", b"# FAQ\nShipping is free.")
    use_openai(app)
    fake.script("responses", {"status": 500}, {"status": 500})
    body = chat(client, owner, project_id)
    assert body["message"]["provider"] == "openrouter" and body["message"]["fallback"] is True
    system = fake.calls("chat")[0].json["messages"][0]
    assert system["role"] == "system"
    assert "----- BEGIN FILE: faq.md -----\n# FAQ\nShipping is free.\n" in system["content"]
    assert fake.calls("responses")[0].json["instructions"] == system["content"]


def test_budget_cuts_and_leaves_out_and_says_so(app, client, owner, project_id, fake):
    app.config["CHAT_FILES_MAX_CHARS"] = 50
    add_file(client, owner, project_id, "a.txt", b"A" * 40)
    add_file(client, owner, project_id, "b.txt", b"B" * 100)
    add_file(client, owner, project_id, "c.txt", b"C" * 10)
    body = chat(client, owner, project_id)

    instructions = fake.calls("chat")[0].json["messages"][0]["content"]
    assert "A" * 40 in instructions
    assert "B" * 10 + "\n----- END FILE: b.txt -----" in instructions
    assert "B" * 11 not in instructions
    assert "[b.txt was cut: 10 of 100 characters included]" in instructions
    assert "C" * 10 not in instructions
    assert "[Not included, over the 50-character budget: c.txt]" in instructions
    meta = {f["name"]: f for f in body["message"]["context_files"]}
    assert (meta["a.txt"]["chars"], meta["a.txt"]["truncated"]) == (40, False)
    assert (meta["b.txt"]["chars"], meta["b.txt"]["truncated"]) == (10, True)
    assert (meta["c.txt"]["included"], meta["c.txt"]["chars"]) == (False, 0)


def test_no_marked_files_means_the_prompt_alone(app, client, owner, project_id, fake):
    add_file(client, owner, project_id, "a.txt", b"alpha", use=False)
    body = chat(client, owner, project_id)
    system = fake.calls("chat")[0].json["messages"][0]["content"]
    assert system == "You are the docs bot."
    assert body["message"]["context_files"] == []


def test_streamed_reply_records_the_files_too(app, client, owner, project_id, fake):
    from tests.sse import parse_sse

    add_file(client, owner, project_id, "a.txt", b"alpha")
    resp = client.post(
        f"/api/projects/{project_id}/chat",
        json={"message": "Hi", "stream": True},
        headers=owner.headers,
    )
    events, _ = parse_sse(resp.get_data(as_text=True))
    done = [data for name, data in events if name == "done"][0]
    assert [f["name"] for f in done["message"]["context_files"]] == ["a.txt"]


def test_chat_page_footer_names_the_files_and_the_cut(app, client, owner, project_id, fake):
    app.config["CHAT_FILES_MAX_CHARS"] = 10
    add_file(client, owner, project_id, "a.txt", b"A" * 40)
    add_file(client, owner, project_id, "b.txt", b"B" * 5)
    cid = chat(client, owner, project_id)["conversation_id"]
    client.post("/login", data={"email": owner.email, "password": owner.password})
    html = client.get(f"/projects/{project_id}?c={cid}").get_data(as_text=True)
    assert "files: a.txt (cut), b.txt (left out)" in html
