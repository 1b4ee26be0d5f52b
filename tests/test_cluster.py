"""Two nodes behind HAProxy, run by ``make cluster``'s own command (``python -m tests.cluster``),
with the fake provider as both nodes' OpenAI. The module starts the cluster once (private
PostgreSQL and Redis, migrations, nodes ``a`` and ``b``, HAProxy) and ends it the way an
operator does, with Ctrl-C.

Which node served what: steps that must happen on a given node talk to that node's own port;
requests through the load balancer read ``X-Served-By``, which HAProxy sets on every answer
(its own 502s included) to the name of the server it chose.

Marked ``cluster``: it runs once per ``make test``, in the SQLite pass (it brings its own
PostgreSQL), like the browser tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.pool import NullPool

from tests.cluster import stored_bytes
from tests.fake_provider import Scenario
from tests.servers import ROOT, new_project, register
from tests.sse import parse_sse

pytestmark = pytest.mark.cluster

PASSWORD = "correct horse battery"
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
LOGIN_ACCOUNT_LIMIT = 6
SETTINGS = {
    # Fast leases and chores, so a reply left by a dead node is marked within a second or two.
    "CHAT_CHECKPOINT_SECONDS": "0.2",
    "CHAT_REPLY_LEASE_SECONDS": "1",
    "CHAT_HEARTBEAT_SECONDS": "0.5",
    "CHAT_RESUME_POLL_SECONDS": "0.1",
    "MAINTENANCE_SECONDS": "0.2",
    "BCRYPT_ROUNDS": "4",
    # Limits high enough for the test's own traffic, but one that the rate-limit test reaches.
    "RATELIMIT_LOGIN": "1000 per minute",
    "RATELIMIT_REGISTER": "1000 per hour",
    "RATELIMIT_CHAT": "1000 per minute",
    "RATELIMIT_UPLOAD": "1000 per minute",
    "RATELIMIT_LOGIN_ACCOUNT": f"{LOGIN_ACCOUNT_LIMIT} per minute",
}


@dataclass
class Running:
    proc: subprocess.Popen
    state: dict
    output: list[str]
    workdir: Path
    reader: threading.Thread

    @property
    def url(self) -> str:
        return self.state["url"]

    def node(self, name: str) -> str:
        return self.state["nodes"][name]["url"]

    def engine(self):
        """No pool: every connection is closed when its block ends (PostgreSQL stops with the
        cluster)."""
        return create_engine(self.state["database_url"], poolclass=NullPool)


@pytest.fixture(scope="module")
def cluster(fake, tmp_path_factory):
    # Not pytest's tmp_path: the private PostgreSQL's data lives in here, and pytest's root-only
    # parent folder is closed to the postgres user.
    workdir = Path(tempfile.mkdtemp(prefix="prompthub-cluster-"))
    workdir.chmod(0o755)  # mkdtemp's 0700 would close it to the postgres user too
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "OPENROUTER_"))
        and k not in {"DATABASE_URL", "REDIS_URL", "TEST_DATABASE_URL", "RATELIMIT_STORAGE_URI"}
    }
    env.update(SETTINGS, OPENAI_API_KEY="test-openai-key")
    env.update(OPENAI_BASE_URL=fake.openai_base_url, OPENROUTER_BASE_URL=fake.openrouter_base_url)
    command = [sys.executable, "-m", "tests.cluster", "--port", "0", "--node-ports", "0,0",
               "--workers", "1", "--workdir", str(workdir)]  # fmt: skip
    # Its own process group, as a terminal's foreground job: Ctrl-C goes to the whole group.
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops everything"):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(120) and proc.poll() is None, "\n".join(output)
        state = json.loads((workdir / "cluster.json").read_text())
        yield Running(proc, state, output, workdir, reader)
    finally:
        if proc.poll() is None:  # the last test stops it with Ctrl-C; this is the fallback
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        logs = tmp_path_factory.mktemp("cluster-logs")  # pytest keeps them (last 3 runs)
        for path in [*workdir.glob("*.log"), *workdir.glob("*.json"), workdir / "haproxy.cfg"]:
            if path.exists() and path.name != "secrets.json":
                shutil.copy(path, logs)
        (logs / "runner.txt").write_text("\n".join(output) + "\n")
        shutil.rmtree(workdir, ignore_errors=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf(client: httpx.Client, path: str = "/login") -> str:
    match = META_TOKEN.search(client.get(path).text)
    assert match, "no csrf-token meta tag"
    return match.group(1)


def log_in(client: httpx.Client, email: str) -> httpx.Response:
    token = csrf(client)
    return client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})


def one_user(base: str) -> tuple[str, str]:
    email = f"u{uuid.uuid4().hex[:10]}@example.com"
    return email, register(base, email, PASSWORD)


# --- one user across both nodes ----------------------------------------------------------------


def test_the_load_balancer_sends_requests_to_both_nodes_in_turn(cluster):
    served = [
        httpx.get(f"{cluster.url}/healthz", trust_env=False).headers["X-Served-By"]
        for _ in range(6)
    ]
    assert sorted(served) == ["a", "a", "a", "b", "b", "b"]
    assert all(x != y for x, y in zip(served, served[1:], strict=False))  # round robin


def test_register_on_node_a_and_log_in_on_node_b(cluster):
    email = f"page{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=cluster.node("a"), trust_env=False) as on_a:
        token = csrf(on_a, "/register")
        r = on_a.post(
            "/register",
            data={"email": email, "password": PASSWORD, "confirm": PASSWORD, "name": "Ada",
                  "csrf_token": token},
        )  # fmt: skip
        assert r.status_code == 302 and r.headers["Location"] == "/"
    with httpx.Client(base_url=cluster.node("b"), trust_env=False) as on_b:
        r = log_in(on_b, email)
        assert r.status_code == 302, r.text
        page = on_b.get("/")
        assert page.status_code == 200 and email in page.text
        cookies = on_b.cookies
    # B's session is good on A too (same SECRET_KEY, sessions in the database).
    with httpx.Client(base_url=cluster.node("a"), cookies=cookies, trust_env=False) as on_a:
        page = on_a.get("/")
        assert page.status_code == 200 and email in page.text
    # And an API token issued by A is good on B (same JWT_SECRET).
    api_email, api_token = one_user(cluster.node("a"))
    me = httpx.get(f"{cluster.node('b')}/api/auth/me", headers=bearer(api_token), trust_env=False)
    assert me.status_code == 200 and me.json()["user"]["email"] == api_email


def test_a_file_uploaded_through_a_is_downloaded_and_used_in_chat_through_b(cluster, fake):
    fake.reset()
    _, token = one_user(cluster.node("a"))
    project = new_project(cluster.node("a"), token)
    content = f"The harbour code word is {uuid.uuid4().hex}.\n".encode()
    r = httpx.post(
        f"{cluster.node('a')}/api/projects/{project}/files",
        files={"file": ("notes.md", content)},
        headers=bearer(token),
        trust_env=False,
    )
    assert r.status_code == 201, r.text
    file = r.json()
    on_b = httpx.Client(base_url=cluster.node("b"), headers=bearer(token), trust_env=False)
    with on_b:
        download = on_b.get(f"/api/projects/{project}/files/{file['id']}/download")
        assert download.status_code == 200 and download.content == content
        r = on_b.patch(f"/api/projects/{project}/files/{file['id']}", json={"use_in_chat": True})
        assert r.status_code == 200 and r.json()["use_in_chat"] is True
        fake.script("responses", Scenario(text="Noted."))
        r = on_b.post(
            f"/api/projects/{project}/chat", json={"message": "The code word?", "stream": False}
        )
        assert r.status_code == 200 and r.json()["reply"] == "Noted.", r.text
    (call,) = fake.calls("responses")
    assert content.decode().strip() in call.json["instructions"]
    with cluster.engine().connect() as conn:
        stored_name, sha = conn.execute(
            text("SELECT stored_name, sha256 FROM files WHERE id = :id"), {"id": file["id"]}
        ).one()
    assert sha == hashlib.sha256(content).hexdigest()
    assert stored_bytes(cluster.state, project, stored_name) == content


def test_a_reply_started_on_a_is_resumed_after_a_reload_on_b(cluster, fake):
    """What the chat page does: the stream on A is cut (the reload), the page comes from B with
    the reply still being written, and its script follows the turn's events from B."""
    fake.reset()
    words = [f"w{i} " for i in range(60)]
    fake.script("responses", Scenario(deltas=words, token_delay_ms=30))
    email, token = one_user(cluster.node("a"))
    project = new_project(cluster.node("a"), token)
    browser = httpx.Client(trust_env=False, timeout=30)
    with browser:
        browser.base_url = cluster.node("a")
        assert log_in(browser, email).status_code == 302
        page_token = csrf(browser, f"/projects/{project}")
        seen = ""
        with browser.stream(
            "POST",
            f"/api/projects/{project}/chat",
            json={"message": "a long one", "stream": True},
            headers={"X-CSRFToken": page_token},
        ) as r:
            assert r.status_code == 200
            for chunk in r.iter_text():
                seen += chunk
                if seen.count("event: delta") >= 5:
                    break  # the reload: the page goes away mid-reply
        start = parse_sse(seen.split("event: delta")[0])[0][0][1]
        turn_id, conversation = start["turn_id"], start["conversation"]["id"]

        browser.base_url = cluster.node("b")
        page = browser.get(f"/projects/{project}?c={conversation}")
        assert page.status_code == 200
        last = re.findall(r'<article class="msg[^"]*" data-id="(\d+)" data-role="(\w+)" '
                          r'data-status="(\w+)"', page.text)[-1]  # fmt: skip
        assert last == (str(turn_id), "assistant", "streaming")
        events = parse_sse(browser.get(f"/api/turns/{turn_id}/events").text)[0]

    assert [name for name, _ in events][:1] == ["start"] and events[-1][0] == "done"
    followed = "".join(d["text"] for name, d in events if name == "delta")
    assert followed == "".join(words)
    assert events[-1][1]["message"]["content"] == "".join(words)
    with cluster.engine().connect() as conn:
        row = conn.execute(
            text("SELECT status, content FROM messages WHERE id = :id"), {"id": turn_id}
        ).one()
    assert tuple(row) == ("complete", "".join(words))


def test_stop_sent_to_b_stops_the_reply_generated_on_a(cluster, fake):
    fake.reset()
    fake.script("responses", Scenario(deltas=[f"w{i} " for i in range(400)], token_delay_ms=10))
    _, token = one_user(cluster.node("a"))
    project = new_project(cluster.node("a"), token)
    raw = ""
    with httpx.Client(trust_env=False, timeout=30, headers=bearer(token)) as client:
        with client.stream(
            "POST",
            f"{cluster.node('a')}/api/projects/{project}/chat",
            json={"message": "a long one", "stream": True},
        ) as r:
            stopped = None
            for chunk in r.iter_text():
                raw += chunk
                if stopped is None and raw.count("event: delta") >= 3:
                    turn_id = parse_sse(raw.split("event: delta")[0])[0][0][1]["turn_id"]
                    stopped = client.post(f"{cluster.node('b')}/api/turns/{turn_id}/stop")
    assert stopped is not None and stopped.status_code == 200
    # The row as B reads it after asking: A (told through Redis at once) may already have ended it.
    assert stopped.json()["id"] == turn_id
    assert stopped.json()["status"] in ("stopping", "incomplete")
    name, data = parse_sse(raw)[0][-1]
    assert name == "done" and data["message"]["status"] == "incomplete"
    shown = "".join(d["text"] for n, d in parse_sse(raw)[0] if n == "delta")
    assert 0 < len(shown.split()) < 400
    with cluster.engine().connect() as conn:
        row = conn.execute(
            text("SELECT status, content FROM messages WHERE id = :id"), {"id": turn_id}
        ).one()
    assert tuple(row) == ("incomplete", shown)
    assert fake.wait_for_disconnects(1)  # A closed its provider request: the stop reached it


def test_a_rate_limit_counts_requests_on_both_nodes_together(cluster):
    """Login attempts on one account through the load balancer: the limit's count is shared
    (Redis), so it is reached after LOGIN_ACCOUNT_LIMIT attempts split over both nodes, not
    after that many on each."""
    email, _ = one_user(cluster.url)
    answers = []
    for _ in range(LOGIN_ACCOUNT_LIMIT + 2):
        r = httpx.post(
            f"{cluster.url}/api/auth/login",
            json={"email": email, "password": "not the password"},
            trust_env=False,
        )
        answers.append((r.status_code, r.headers["X-Served-By"], r.headers.get("Retry-After")))
    allowed, refused = answers[:LOGIN_ACCOUNT_LIMIT], answers[LOGIN_ACCOUNT_LIMIT:]
    assert {status for status, _, _ in allowed} == {401}
    assert Counter(node for _, node, _ in allowed) == {"a": 3, "b": 3}
    assert [status for status, _, _ in refused] == [429, 429]
    assert {node for _, node, _ in refused} == {"a", "b"}  # each node refuses: one count
    assert all(int(after) > 0 for _, _, after in refused)


# --- node A dies under load --------------------------------------------------------------------


@dataclass
class Outcome:
    op: str
    started: float
    ended: float = 0.0
    status: int | None = None
    served_by: str | None = None
    error: str | None = None  # the connection failed (a stream cut, say)
    body: str = ""
    sent: bytes = b""  # an upload's bytes
    said: str = ""  # a chat message's text (each one unique)
    project: int = 0
    events: list = field(default_factory=list)


def complete_events(raw: str) -> list[tuple[str, dict]]:
    """The events of a body that may have been cut: only whole ones."""
    whole = raw[: raw.rfind("\n\n") + 2] if "\n\n" in raw else ""
    return parse_sse(whole)[0]


def one_request(client: httpx.Client, op: str, project: int, n: int) -> Outcome:
    out = Outcome(op, time.monotonic(), project=project)
    try:
        if op == "stream":
            out.said = f"stream {n} {uuid.uuid4().hex}"
            body = {"message": out.said, "stream": True}
            with client.stream("POST", f"/api/projects/{project}/chat", json=body) as r:
                out.status, out.served_by = r.status_code, r.headers.get("X-Served-By")
                for chunk in r.iter_text():
                    out.body += chunk
        else:
            if op == "chat":
                out.said = f"chat {n} {uuid.uuid4().hex}"
                body = {"message": out.said, "stream": False}
                r = client.post(f"/api/projects/{project}/chat", json=body)
            elif op == "upload":
                out.sent = f"file {n} {uuid.uuid4().hex}\n".encode()
                files = {"file": (f"f{n}.txt", out.sent)}
                r = client.post(f"/api/projects/{project}/files", files=files)
            else:
                r = client.get(f"/api/projects/{project}/conversations")
            out.status, out.body = r.status_code, r.text
            out.served_by = r.headers.get("X-Served-By")
    except httpx.HTTPError as exc:
        out.error = type(exc).__name__
    out.ended = time.monotonic()
    if op == "stream":
        out.events = complete_events(out.body)
    return out


def test_node_a_killed_under_load_traffic_moves_to_b_and_nothing_acknowledged_is_lost(
    cluster, fake
):
    fake.reset()
    # Replies that take a while (0.1 s + 30 x 20 ms), so some are in flight when A dies.
    reply = [f"t{i} " for i in range(30)]
    fake.script("responses", *[Scenario(deltas=reply, ttft_ms=100, token_delay_ms=20)] * 400)
    users = []
    for _ in range(3):
        _, token = one_user(cluster.url)
        users.append((token, new_project(cluster.url, token)))
    ops = ["stream", "chat", "upload", "list"]
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop(i: int) -> None:
        token, project = users[i % len(users)]
        with httpx.Client(
            base_url=cluster.url, headers=bearer(token), trust_env=False, timeout=30
        ) as client:
            n = 0
            while not stop.is_set():
                out = one_request(client, ops[(i + n) % len(ops)], project, n)
                n += 1
                with lock:
                    outcomes.append(out)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    killed_at = time.monotonic()
    os.killpg(cluster.state["nodes"]["a"]["pid"], signal.SIGKILL)
    # A is dead once its port refuses connections (its processes are gone): until then it may
    # still accept a request, which then fails with it.
    a_port = urlsplit(cluster.node("a")).port
    while listening(a_port):
        assert time.monotonic() - killed_at < 5
        time.sleep(0.001)
    dead_at = time.monotonic()
    time.sleep(3.0)
    stop.set()
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads)

    def overlaps_death(o: Outcome) -> bool:
        return o.started < dead_at and o.ended >= killed_at

    before = [o for o in outcomes if o.ended < killed_at]
    after = [o for o in outcomes if o.started >= dead_at]
    # On A when it died: answered by A (X-Served-By, also on HAProxy's own 502) or cut before
    # any answer, and running across the kill.
    on_a = [o for o in outcomes if overlaps_death(o) and o.served_by in ("a", None)]
    failed = [o for o in outcomes if o.error or (o.status or 0) >= 500]
    report = {
        "requests": len(outcomes),
        "before_kill": dict(Counter(o.served_by for o in before)),
        "in_flight_at_kill": sum(overlaps_death(o) for o in outcomes),
        "in_flight_on_a": len(on_a),
        "failed": len(failed),
        "failed_5xx": dict(Counter(str(o.status) for o in failed if (o.status or 0) >= 500)),
        "failed_cut": dict(Counter(o.op for o in failed if o.error and o.status)),
        "failed_closed_without_answer": dict(Counter(o.op for o in failed if not o.status)),
        "after_death": dict(Counter(o.served_by for o in after)),
        "death_ms": round(1000 * (dead_at - killed_at), 1),
    }
    print("kill under load:", json.dumps(report))  # noqa: T201
    (cluster.workdir / "kill-under-load.json").write_text(json.dumps(report, indent=2))

    # Both nodes took traffic, then B alone, and nothing sent after A's death failed.
    assert set(report["before_kill"]) == {"a", "b"}
    assert after and {o.served_by for o in after} == {"b"}
    assert [o for o in after if o.error or (o.status or 0) >= 400] == []
    # The only failures (a 5xx, a stream cut, a connection closed unanswered) were on A as it
    # died; HAProxy's 5xx say so themselves.
    assert on_a and all(o in on_a for o in failed), [vars(o) for o in failed]
    assert all(o.served_by == "a" for o in failed if o.status)

    # Everything acknowledged is in PostgreSQL and the file store.
    said, wanted_replies, wanted_files = set(), {}, {}
    for o in outcomes:
        if o.op == "stream" and o.events and o.events[0][0] == "start":
            assert o.events[0][1]["user_message"]["content"] == o.said
            said.add(o.said)
            if o.events[-1][0] == "done":
                wanted_replies[o.events[-1][1]["message"]["id"]] = "".join(reply)
        elif o.op == "chat" and o.status == 200:
            body = json.loads(o.body)
            said.add(o.said)
            wanted_replies[body["message"]["id"]] = body["reply"]
        elif o.op == "upload" and o.status == 201:
            wanted_files[json.loads(o.body)["id"]] = (o.project, o.sent)
    assert said and wanted_replies and wanted_files
    projects = tuple(project for _, project in users)
    engine = cluster.engine()
    deadline = time.monotonic() + 15  # A's unfinished replies: marked by B once their lease ends
    while True:
        with engine.connect() as conn:
            messages = {
                r.id: (r.role, r.status, r.content)
                for r in conn.execute(
                    text("SELECT m.id, m.role, m.status, m.content FROM messages m"
                         " JOIN conversations c ON c.id = m.conversation_id"
                         " WHERE c.project_id IN :p").bindparams(bindparam("p", expanding=True)),
                    {"p": projects},
                )
            }  # fmt: skip
            files = {
                r.id: (r.project_id, r.stored_name, r.sha256)
                for r in conn.execute(text("SELECT id, project_id, stored_name, sha256 FROM files"))
            }
        streaming = [m for m in messages.values() if m[1] in ("streaming", "stopping")]
        if not streaming or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    engine.dispose()
    assert streaming == []  # every reply ended: complete, or interrupted where A died
    said_stored = Counter(content for role, _, content in messages.values() if role == "user")
    # Each acknowledged message is stored, once; nothing was stored twice (every message is
    # unique), so no request was sent to both nodes; unacknowledged ones are those on A.
    assert all(said_stored[content] == 1 for content in said)
    assert set(said_stored.values()) == {1}
    assert len(said_stored) - len(said) <= len(on_a)
    for mid, content in wanted_replies.items():
        assert messages[mid] == ("assistant", "complete", content)
    assert {status for role, status, _ in messages.values() if role == "assistant"} <= {
        "complete",
        "interrupted",
    }
    for fid, (project, sent) in wanted_files.items():
        assert files[fid][0] == project and files[fid][2] == hashlib.sha256(sent).hexdigest()
        assert stored_bytes(cluster.state, project, files[fid][1]) == sent


# --- Ctrl-C ------------------------------------------------------------------------------------


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_everything_it_started(cluster):
    """Last: Ctrl-C (SIGINT to the command's process group, as a terminal sends it) stops
    HAProxy, the node still alive, Redis and PostgreSQL, and the command exits 0."""
    state = cluster.state
    ports = [urlsplit(state["url"]).port, urlsplit(state["database_url"]).port,
             urlsplit(state["redis_url"]).port,
             *(urlsplit(n["url"]).port for n in state["nodes"].values())]  # fmt: skip
    pids = [state["haproxy"]["pid"], *(n["pid"] for n in state["nodes"].values())]
    assert listening(ports[0]) and listening(ports[1]) and listening(ports[2])
    os.killpg(cluster.proc.pid, signal.SIGINT)
    assert cluster.proc.wait(90) == 0
    cluster.reader.join(10)  # the last lines, read to the end of the output
    assert cluster.output[-2:] == ["stopping…", "stopped."], cluster.output[-5:]
    assert [p for p in ports if listening(p)] == []
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
    # Nothing is left in the nodes' process groups (workers, extraction children).
    groups = set(pids)
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) in groups:
                left.append(proc.name)
    assert left == []
