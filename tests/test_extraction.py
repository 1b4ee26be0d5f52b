"""PDF text extraction in the sandbox (issue 12, finding 1): the upload never waits on a parser,
a PDF bomb ends as "too complex" within its limits, claims are exclusive, and a file left
pending by a dead process is taken up again. The server test runs ten bombs through gunicorn
while the worker keeps answering."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from app.extensions import db
from app.files.extraction import SWEEP_BATCH, Limits, claim_next, extract_file
from app.models import StoredFile
from app.models.base import utcnow
from tests.factories import make_project, make_user, wait_extracted
from tests.filehelp import files_page, upload
from tools.fake_provider import Scenario
from tools.pdfs import bomb_pdf, text_pdf
from tools.servers import free_port, gunicorn, migrate, new_project, register, server_env


@pytest.fixture
def config_overrides():
    return {"EXTRACT_CPU_SECONDS": 1, "EXTRACT_WALL_SECONDS": 20.0, "EXTRACT_MAX_PAGES": 3}


@pytest.fixture
def project_id(app, owner):
    return make_project(app, owner, name="Docs")


def pending_upload(client, owner, project_id, name, content) -> int:
    resp = upload(client, owner, project_id, name, content)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["text"] == {
        "status": "pending",
        "chars": 0,
        "pages": None,
        "note": "Extracting text…",
    }
    return resp.get_json()["id"]


def test_a_pdf_bomb_ends_too_complex_at_the_cpu_limit(app, client, owner, project_id):
    bomb = bomb_pdf()
    assert len(bomb) < 20_000  # small on the wire, minutes of work for a parser
    file_id = pending_upload(client, owner, project_id, "bomb.pdf", bomb)
    body = wait_extracted(client, owner.headers, project_id, file_id)
    assert body["text"]["status"] == "too_complex"
    assert body["text"]["note"].startswith("Too complex to extract within the limits (1 s of CPU")
    resp = client.patch(
        f"/api/projects/{project_id}/files/{file_id}",
        json={"use_in_chat": True},
        headers=owner.headers,
    )
    assert resp.status_code == 422
    assert "Too complex" in resp.get_json()["error"]["message"]


def test_the_wall_clock_limit_ends_a_run(app, client, owner, project_id):
    app.config.update(EXTRACT_CPU_SECONDS=60, EXTRACT_WALL_SECONDS=0.5)
    file_id = pending_upload(client, owner, project_id, "bomb.pdf", bomb_pdf())
    body = wait_extracted(client, owner.headers, project_id, file_id)
    assert body["text"]["status"] == "too_complex"
    assert body["text"]["note"].endswith("0.5 s).")


def test_only_the_first_pages_are_read_past_the_page_cap(app, client, owner, project_id):
    file_id = pending_upload(client, owner, project_id, "long.pdf", text_pdf("a", "b", "c", "d"))
    body = wait_extracted(client, owner.headers, project_id, file_id)
    assert body["text"]["status"] == "ok"
    assert body["text"]["pages"] == 4
    assert body["text"]["note"] == "Only the first 3 of 4 pages read."
    with app.app_context():
        assert db.session.get(StoredFile, file_id).text == "a\n\nb\n\nc"


def test_a_pending_file_cannot_be_used_in_chat_yet(app, client, owner, project_id):
    app.config.update(EXTRACT_CPU_SECONDS=60, EXTRACT_WALL_SECONDS=3)
    file_id = pending_upload(client, owner, project_id, "bomb.pdf", bomb_pdf())
    resp = client.patch(
        f"/api/projects/{project_id}/files/{file_id}",
        json={"use_in_chat": True},
        headers=owner.headers,
    )
    assert resp.status_code == 422
    assert "still being extracted" in resp.get_json()["error"]["message"]
    wait_extracted(client, owner.headers, project_id, file_id)


def test_the_files_tab_says_extracting_and_too_complex(app, client, owner, project_id, auth):
    app.config.update(EXTRACT_CPU_SECONDS=60, EXTRACT_WALL_SECONDS=2)
    file_id = pending_upload(client, owner, project_id, "bomb.pdf", bomb_pdf())
    auth.login()
    html = files_page(client, project_id)
    assert "extracting…" in html and "text-pending" in html
    wait_extracted(client, owner.headers, project_id, file_id)
    html = files_page(client, project_id)
    assert "too complex to extract" in html


def _set(app, file_id, **values) -> None:
    with app.app_context():
        db.session.execute(update(StoredFile).where(StoredFile.id == file_id).values(**values))
        db.session.commit()


def test_an_apps_shutdown_lets_the_running_extraction_finish_and_starts_no_other(
    app, client, owner, project_id
):
    # The in-process runner ends before the app's connections are closed: a job cut off, or
    # one still holding a connection of the disposed pool, would leave an open connection
    # behind for the collector (PostgreSQL's driver warns) and a file half-claimed.
    first = pending_upload(client, owner, project_id, "first.pdf", text_pdf("one", "two"))
    deadline = time.monotonic() + 10
    while not _started(app, first):
        assert time.monotonic() < deadline, "the extraction did not start"
        time.sleep(0.01)
    assert app.extensions["jobs"].shutdown(timeout=30)
    assert not _running_jobs()
    with app.app_context():
        assert db.session.get(StoredFile, first).text_status == "ok"
    # After shutdown an upload still succeeds; its job waits in the queue for the next runner.
    second = pending_upload(client, owner, project_id, "second.pdf", text_pdf("hello"))
    time.sleep(0.3)
    assert not _running_jobs()
    with app.app_context():
        assert db.session.get(StoredFile, second).text_status == "pending"


def _started(app, file_id: int) -> bool:
    """Claimed by a run, or already past it."""
    with app.app_context():
        found = db.session.get(StoredFile, file_id)
        started = found.text_claimed_at is not None or found.text_status != "pending"
        db.session.remove()
    return started


def _running_jobs() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "jobs" and t.is_alive()]


def test_a_claim_held_by_a_live_run_is_not_taken(app, client, owner, project_id):
    file_id = pending_upload(client, owner, project_id, "a.pdf", text_pdf("alpha"))
    wait_extracted(client, owner.headers, project_id, file_id)
    limits = Limits.from_config(app.config)
    # Back to pending, claimed a moment ago by another process: not ours.
    _set(app, file_id, text_status="pending", text_claimed_at=utcnow())
    with app.app_context():
        assert extract_file(file_id, limits) is False
    # Its lease is over (that process died): the next run takes it.
    _set(app, file_id, text_claimed_at=utcnow() - limits.lease - timedelta(seconds=1))
    with app.app_context():
        assert extract_file(file_id, limits) is True
        assert extract_file(file_id, limits) is False  # done: a second run changes nothing
        assert db.session.get(StoredFile, file_id).text_status == "ok"


def test_the_sweep_takes_up_files_a_dead_process_left_pending(app, client, owner, project_id):
    never_claimed = pending_upload(client, owner, project_id, "a.pdf", text_pdf("alpha"))
    lease_over = pending_upload(client, owner, project_id, "b.pdf", text_pdf("beta"))
    for file_id in (never_claimed, lease_over):
        wait_extracted(client, owner.headers, project_id, file_id)
    long_ago = utcnow() - timedelta(hours=1)
    _set(app, never_claimed, text_status="pending", created_at=long_ago, text_claimed_at=None)
    _set(app, lease_over, text_status="pending", text_claimed_at=long_ago)

    app.extensions["maintenance"].run_now()
    for file_id, text in ((never_claimed, "alpha"), (lease_over, "beta")):
        body = wait_extracted(client, owner.headers, project_id, file_id)
        assert body["text"]["status"] == "ok"
        assert body["text"]["chars"] == len(text)


@pytest.mark.server
def test_a_worker_keeps_answering_while_ten_bombs_are_extracted(fake, tmp_path):
    """Before: each bomb held the gevent worker for its whole parse (~6-12 s per page), so the
    uploads themselves timed out, and so did /readyz and every stream on that worker."""
    fake.reset()
    env = server_env(
        f"sqlite:///{tmp_path / 'server.db'}",
        free_port(),
        UPLOAD_DIR=str(tmp_path / "uploads"),
        OPENAI_API_KEY="test-openai-key",
        OPENAI_BASE_URL=fake.openai_base_url,
        EXTRACT_CPU_SECONDS="1",
    )
    migrate(env)
    with gunicorn(env, tmp_path) as server:
        token = register(server.base, "bombs@example.com")
        project = new_project(server.base, token)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base, headers=auth, timeout=10, trust_env=False) as c:
            ids = []
            for i in range(10):
                body = bomb_pdf(pages=20 + i)  # different bytes: ten files, not one
                r = c.post(f"/api/projects/{project}/files", files={"file": (f"b{i}.pdf", body)})
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])

            assert c.get("/readyz").status_code == 200
            fake.script("responses", Scenario(text="still here"))
            r = c.post(f"/api/projects/{project}/chat", json={"message": "hi", "stream": False})
            assert r.status_code == 200 and r.json()["reply"] == "still here"
            statuses = [
                f["text"]["status"] for f in c.get(f"/api/projects/{project}/files").json()["data"]
            ]
            assert "pending" in statuses  # it answered while bombs were still queued or running

            deadline = time.monotonic() + 120
            while "pending" in statuses and time.monotonic() < deadline:
                time.sleep(0.5)
                data = c.get(f"/api/projects/{project}/files").json()["data"]
                statuses = [f["text"]["status"] for f in data]
            assert statuses == ["too_complex"] * 10


# --- fair share between users (issue 26, finding 2) -------------------------------------------


def _claims(app, file_ids) -> list[tuple[str, bool]]:
    """Each file's (status, ever started): started = claimed by a run, or already finished."""
    with app.app_context():
        rows = {
            f.id: (f.text_status, f.text_status != "pending" or f.text_claimed_at is not None)
            for f in db.session.scalars(select(StoredFile).where(StoredFile.id.in_(file_ids)))
        }
        db.session.commit()
    return [rows[i] for i in file_ids]


@pytest.mark.parametrize(
    "config_overrides",
    [
        {"EXTRACT_WORKERS": 1, "EXTRACT_PER_USER": 1, "EXTRACT_CPU_SECONDS": 1},
        {"EXTRACT_WORKERS": 2, "EXTRACT_PER_USER": 1, "EXTRACT_CPU_SECONDS": 1},
    ],
    ids=["one-worker", "two-workers"],
)
def test_another_users_small_pdf_is_not_queued_behind_one_users_heavy_ones(
    app, client, owner, project_id
):
    """Before: one first-come queue per process, so four PDFs that each burn the CPU limit kept
    another user's one-page PDF waiting 173 s. Now users are served in turn and one user holds
    at most EXTRACT_PER_USER workers. One worker: Bea's file runs right after Ada's first (then
    Ada's second starts); two workers: the second one is Bea's at once. Either way, when Bea's
    file is done Ada's second has not finished and her third has not started."""
    heavy = [
        pending_upload(client, owner, project_id, f"heavy{i}.pdf", bomb_pdf(pages=20 + i))
        for i in range(3)
    ]
    bea = make_user(app, email="bea@example.com")
    bea_project = make_project(app, bea, name="Bea's docs")
    small = pending_upload(client, bea, bea_project, "one-page.pdf", text_pdf("hello from bea"))

    body = wait_extracted(client, bea.headers, bea_project, small, timeout=30)
    assert body["text"]["status"] == "ok" and body["text"]["chars"] == len("hello from bea")
    first, second, third = _claims(app, heavy)
    assert first[1], "Ada's first file started before Bea's upload"
    assert second[0] == "pending", "Ada's second file ran before Bea's"
    assert third == ("pending", False), "Ada's third file waits for its turn"

    for file_id in heavy:  # Ada's files still run, one after another
        body = wait_extracted(client, owner.headers, project_id, file_id, timeout=60)
        assert body["text"]["status"] == "too_complex"


def test_the_sweep_serves_every_user_not_only_the_oldest_files(app, client, owner, project_id):
    """Before: the sweep queued the oldest SWEEP_BATCH pending files, so one user with that many
    stale files kept every other user's out of each sweep. Now users are served in turn."""
    long_ago = utcnow() - timedelta(hours=1)
    with app.app_context():
        for i in range(SWEEP_BATCH + 5):  # rows whose bytes are gone: each run ends as failed
            db.session.add(
                StoredFile(
                    project_id=project_id,
                    name=f"lost{i}.pdf",
                    stored_name=f"{i:032x}",
                    size=10,
                    content_type="application/pdf",
                    sha256=f"{i:064x}",
                    text_status="failed",  # pending below, once Bea's newer file is in
                    created_at=long_ago,
                )
            )
        db.session.commit()
    bea = make_user(app, email="bea@example.com")
    bea_project = make_project(app, bea, name="Bea's docs")
    small = pending_upload(client, bea, bea_project, "one-page.pdf", text_pdf("hello from bea"))
    wait_extracted(client, bea.headers, bea_project, small)
    with app.app_context():  # Ada's older files and Bea's newer one: all left by a dead worker
        db.session.execute(
            update(StoredFile)
            .where(StoredFile.project_id == project_id)
            .values(text_status="pending")
        )
        db.session.commit()
    _set(app, small, text_status="pending", created_at=long_ago, text_claimed_at=None)

    app.extensions["maintenance"].run_now()  # one sweep
    body = wait_extracted(client, bea.headers, bea_project, small, timeout=10)
    assert body["text"]["status"] == "ok"
    # Bea's file was among the first runs, not behind Ada's backlog, and Ada's all ran too
    # (each job queues the next while claimable files remain).
    deadline = time.monotonic() + 60
    while _pending(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pending(app) == 0
    with app.app_context():
        served = db.session.get(StoredFile, small).text_claimed_at
        before = db.session.scalar(
            select(func.count())
            .select_from(StoredFile)
            .where(StoredFile.project_id == project_id, StoredFile.text_claimed_at < served)
        )
        db.session.commit()
    assert before <= app.config["EXTRACT_WORKERS"]


def _pending(app) -> int:
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(StoredFile).where(StoredFile.text_status == "pending")
        )
        db.session.commit()
    return count


def _sandboxes() -> dict[int, int]:
    """pid -> niceness of each extraction child of this process running now (from /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == os.getpid() and b"sandbox.py" in cmdline:
            found[int(stat.parent.name)] = int(fields[16])  # field 19: the 17th after the name
    return found


@pytest.mark.parametrize(
    "config_overrides",
    [{"EXTRACT_WORKERS": 2, "EXTRACT_PER_USER": 1, "EXTRACT_CPU_SECONDS": 1, "EXTRACT_NICE": 15}],
)
def test_one_user_runs_one_child_at_a_time_at_the_lower_priority(app, client, owner, project_id):
    """The bounded share: EXTRACT_PER_USER children of one user at once (here 1 of the 2
    workers), each at EXTRACT_NICE above the web process."""
    heavy = [
        pending_upload(client, owner, project_id, f"heavy{i}.pdf", bomb_pdf(pages=20 + i))
        for i in range(2)
    ]
    at_once, nice = 0, {}
    while "pending" in (status for status, _ in _claims(app, heavy)):
        children = _sandboxes()
        at_once = max(at_once, len(children))
        nice.update(children)  # the last seen: a child lowers itself once it has started
        time.sleep(0.02)
    assert at_once == 1
    assert len(nice) == 2 and set(nice.values()) == {os.nice(0) + 15}


@pytest.mark.server
def test_through_gunicorn_one_users_heavy_pdfs_leave_another_users_pdf_alone(tmp_path):
    """The attack of issue 26 on a running server (gevent worker, default EXTRACT_* shares):
    one account uploads heavy PDFs, another a one-page PDF, which is extracted while the first
    account's second and third are still pending; the heavy ones all run to their end."""
    env = server_env(
        f"sqlite:///{tmp_path / 'server.db'}",
        free_port(),
        UPLOAD_DIR=str(tmp_path / "uploads"),
        EXTRACT_CPU_SECONDS="1",
    )
    migrate(env)
    with gunicorn(env, tmp_path) as server:
        clients = []
        for email in ("ada@example.com", "bea@example.com"):
            token = register(server.base, email)
            project = new_project(server.base, token)
            auth = {"Authorization": f"Bearer {token}"}
            client = httpx.Client(base_url=server.base, headers=auth, timeout=10, trust_env=False)
            clients.append((client, f"/api/projects/{project}/files"))
        (ada, ada_files), (bea, bea_files) = clients

        def status(client, url) -> str:
            return client.get(url).json()["text"]["status"]

        with ada, bea:
            heavy = []
            for i in range(3):
                r = ada.post(ada_files, files={"file": (f"h{i}.pdf", bomb_pdf(pages=20 + i))})
                assert r.status_code == 201, r.text
                heavy.append(f"{ada_files}/{r.json()['id']}")
            r = bea.post(bea_files, files={"file": ("one.pdf", text_pdf("hello from bea"))})
            assert r.status_code == 201, r.text
            small = f"{bea_files}/{r.json()['id']}"

            deadline = time.monotonic() + 30
            while status(bea, small) == "pending" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert status(bea, small) == "ok"
            assert [status(ada, url) for url in heavy[1:]] == ["pending", "pending"]

            deadline = time.monotonic() + 60
            while "pending" in (done := [status(ada, url) for url in heavy]):
                assert time.monotonic() < deadline, done
                time.sleep(0.2)
            assert done == ["too_complex"] * 3


# The order itself (``claim_next``), on rows: owners in turn, each with a cap.


def _lost_files(app, project_id, names) -> list[int]:
    """Pending rows with no bytes behind them (a run of one ends as failed)."""
    with app.app_context():
        rows = [
            StoredFile(
                project_id=project_id,
                name=name,
                stored_name=f"{abs(hash(name)):032x}"[:32],
                size=10,
                content_type="application/pdf",
                sha256=f"{abs(hash(name)):064x}"[:64],
                text_status="pending",
            )
            for name in names
        ]
        db.session.add_all(rows)
        db.session.commit()
        return [row.id for row in rows]


def test_owners_are_served_in_turn_each_up_to_their_share(app, owner, project_id):
    """Before (a per-process FairQueue) this order held in one process's memory; now it is read
    from the rows, so it holds across workers and nodes."""
    ada = _lost_files(app, project_id, ["a1.pdf", "a2.pdf", "a3.pdf"])
    bea = make_user(app, email="bea@example.com")
    (bea1,) = _lost_files(app, make_project(app, bea, name="Bea's"), ["b1.pdf"])
    with app.app_context():
        limits = Limits.from_config(app.config)
        assert claim_next(limits, per_owner=1) == ada[0]
        assert claim_next(limits, per_owner=1) == bea1  # Ada is at her share
        assert claim_next(limits, per_owner=1) is None  # both are
        assert extract_file(ada[0], limits, claimed=True)  # ends as failed: no bytes
        assert claim_next(limits, per_owner=2) == ada[1]
        assert claim_next(limits, per_owner=2) == ada[2]  # a share of two
        assert claim_next(limits, per_owner=2) is None
