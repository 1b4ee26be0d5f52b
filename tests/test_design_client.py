"""The design documents' client (``tests/design_client.py``) against a real server: gunicorn
as production runs it, the fake provider over HTTP, CORS for one allowed front-end origin."""

from __future__ import annotations

import time

import pytest

from tests.design_client import BlockedByBrowser, run
from tools.servers import gunicorn, migrate, provider_env

pytestmark = pytest.mark.server  # gunicorn or a private server per test or module

FRONT_END = "https://app.example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake):
    folder = tmp_path_factory.mktemp("design")
    database_url = f"sqlite:///{folder / 'design.db'}"
    env = provider_env(fake, folder, database_url, CORS_ORIGINS=FRONT_END)
    migrate(env)
    with gunicorn(env, folder) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()


@pytest.mark.parametrize("origin", [None, FRONT_END], ids=["same-origin", "cross-origin"])
def test_a_client_written_from_the_design_works_unchanged(server, fake, origin):
    seen = run(server.base, origin=origin)

    assert (
        seen.project["active_prompt"]["content"] == "You are a travel helper. Keep answers short."
    )
    first, second = seen.replies
    assert second["conversation_id"] == first["conversation_id"]  # one chat per project
    last_call = fake.calls("responses")[-1].json
    assert last_call["instructions"] == "You are a travel helper. Keep answers short."
    assert [(item["role"], item["content"]) for item in last_call["input"]] == [
        ("user", "I am planning a trip to Lisbon."),
        ("assistant", first["reply"]),
        ("user", "Which city did I name?"),
    ]
    assert seen.file["name"] == "packing-list.txt"
    assert seen.file["size"] == len(b"passport\ncharger\nsunscreen\n")
    # The OpenAI copy is a background job: the upload answered before it was made.
    deadline = time.monotonic() + 30
    while not fake.calls("files"):
        assert time.monotonic() < deadline, "the file was never copied to OpenAI"
        time.sleep(0.05)
    upload = fake.calls("files")[-1]
    assert upload.form["purpose"] == "assistants"


def test_a_front_end_on_an_origin_not_allowed_is_blocked_at_the_first_call(server):
    with pytest.raises(BlockedByBrowser, match="preflight of POST /api/auth/register"):
        run(server.base, origin="https://evil.example")
