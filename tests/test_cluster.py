"""Two nodes behind HAProxy, run by ``make cluster``'s own command (``python -m tools.cluster``),
with the fake provider as both nodes' OpenAI. The module starts the cluster once (private
PostgreSQL and Redis, migrations, nodes ``a`` and ``b``, HAProxy) and ends it the way an
operator does, with Ctrl-C. Shared services are stopped and started through the runner's own
fault-drill commands on its standard input (``stop postgres``), as an operator types them.

Which node served what: steps that must happen on a given node talk to that node's own port;
requests through the load balancer read ``X-Served-By``, which HAProxy sets on every answer
(its own 502s included) to the name of the server it chose.

Marked ``cluster``: it runs once per ``make test``, in the SQLite pass (it brings its own
PostgreSQL), like the browser tests.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.pool import NullPool

from tests.sse import parse_sse
from tools.cluster import NODES, close_s3_clients, haproxy_config, stored_bytes
from tools.fake_provider import Scenario
from tools.servers import ROOT, free_port, new_project, register

pytestmark = [pytest.mark.cluster, pytest.mark.server]

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
    "CHAT_TITLES": "false",  # no title job taking the fake's scripted replies
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

    def wait_for(self, text: str, since: int = 0, timeout: float = 30) -> str:
        """The first output line from line ``since`` on that contains ``text``, once printed."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.output[since:] if text in line]
            if found:
                return found[0]
            assert time.monotonic() < deadline, (text, self.output[since:])
            time.sleep(0.05)

    def command(self, line: str, done: str, timeout: float = 120) -> None:
        """Type a command to the runner (``stop postgres``) and wait for its answer."""
        assert self.proc.stdin is not None
        since = len(self.output)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while not any(out == done or out.startswith(line + ":") for out in self.output[since:]):
            assert time.monotonic() < deadline, (line, self.output[since:])
            time.sleep(0.05)
        assert done in self.output[since:], self.output[since:]


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
    command = [sys.executable, "-m", "tools.cluster", "--port", "0", "--node-ports", "0,0",
               "--workers", "1", "--workdir", str(workdir)]  # fmt: skip
    # Its own process group, as a terminal's foreground job: Ctrl-C goes to the whole group.
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
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
        close_s3_clients()
        assert proc.stdout is not None and proc.stdin is not None
        proc.stdout.close()
        with contextlib.suppress(OSError):
            proc.stdin.close()
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


# --- the load balancer: its own errors, request ids, one cluster per folder --------------------


def test_haproxy_answers_its_own_errors_as_json_under_api_and_as_a_page_elsewhere(tmp_path):
    """No node answers (both down): HAProxy's 503 is the app's JSON shape with Retry-After under
    /api/, a short page elsewhere; never its built-in HTML page to an API client."""
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(port, {"a": free_port(), "b": free_port()}))
    haproxy = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert haproxy.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            api = client.post("/api/projects/1/chat", json={"message": "hi"})
            page = client.get("/projects/1")
    finally:
        haproxy.terminate()
        haproxy.wait(10)
    assert api.status_code == 503 and api.headers["content-type"] == "application/json"
    assert api.json()["error"]["code"] == "service_unavailable"
    assert int(api.headers["Retry-After"]) > 0 and api.headers["Cache-Control"] == "no-store"
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "try again" in page.text.lower() and int(page.headers["Retry-After"]) > 0


HAPROXY_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+){4}")


def test_the_request_id_is_set_by_haproxy_and_logged_by_it_and_by_the_node(cluster):
    """No id, or one the app would not keep: HAProxy makes one; a sane one is kept. Either way
    HAProxy's log line and the serving node's access line carry the id the client got back."""
    sent = {"none": None, "sane": f"client-{uuid.uuid4().hex[:12]}", "insane": "two words"}
    got = {}
    for name, rid in sent.items():
        headers = {"X-Request-ID": rid} if rid else {}
        r = httpx.get(f"{cluster.url}/api/projects", headers=headers, trust_env=False)
        assert r.status_code == 401
        got[name] = (r.headers["X-Request-ID"], r.headers["X-Served-By"])
    assert got["sane"][0] == sent["sane"]
    assert HAPROXY_ID.fullmatch(got["none"][0]) and HAPROXY_ID.fullmatch(got["insane"][0])
    for rid, node in got.values():
        haproxy_log = Path(cluster.state["haproxy"]["log"])
        node_log = Path(cluster.state["nodes"][node]["log"])
        deadline = time.monotonic() + 10
        while f"{{{rid}}}" not in haproxy_log.read_text() or (
            f"request_id={rid} " not in node_log.read_text()
        ):
            assert time.monotonic() < deadline, rid
            time.sleep(0.05)


def test_a_second_cluster_in_the_same_folder_is_refused_plainly(cluster):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    second = subprocess.run(
        [sys.executable, "-m", "tools.cluster", "--port", "0", "--node-ports", "0,0",
         "--workdir", str(cluster.workdir)],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 1
    assert (
        f"error: another `make cluster` is running in {cluster.workdir} (pid {cluster.proc.pid})"
        in second.stderr
    ), second.stderr
    assert "pg_ctl" not in second.stdout + second.stderr
    assert httpx.get(f"{cluster.url}/readyz", trust_env=False).status_code == 200


# --- a rolling deploy, and a writer that dies (issue 27) ----------------------------------------


def ask_runner(cluster, ask, done: str, timeout: float = 180) -> list[str]:
    """Give the ``make cluster`` command a drill (a typed line, or a signal) and wait for its
    ``done`` line; the lines it printed meanwhile. Then read the nodes' new pids."""
    start = len(cluster.output)
    if isinstance(ask, str):
        cluster.command(ask, done, timeout)
    else:
        os.kill(cluster.proc.pid, ask)
        deadline = time.monotonic() + timeout
        while done not in cluster.output[start:]:
            assert cluster.proc.poll() is None, cluster.output[-10:]
            assert time.monotonic() < deadline, cluster.output[start:]
            time.sleep(0.1)
    cluster.state.update(json.loads((cluster.workdir / "cluster.json").read_text()))
    return cluster.output[start:]


def stream_loop(base: str, token: str, project: int, stop: threading.Event, out: list) -> None:
    with httpx.Client(base_url=base, headers=bearer(token), trust_env=False, timeout=60) as c:
        n = 0
        while not stop.is_set():
            out.append(one_request(c, "stream", project, n))
            n += 1


def leave_after_start(client: httpx.Client, project: int) -> int | None:
    """Start a reply and leave after its third delta (it goes on, detached); its turn id."""
    raw = ""
    with contextlib.suppress(httpx.HTTPError):
        body = {"message": f"leave {uuid.uuid4().hex}", "stream": True}
        with client.stream("POST", f"/api/projects/{project}/chat", json=body) as r:
            for chunk in r.iter_text():
                raw += chunk
                if raw.count("event: delta") >= 3:
                    break
    events = complete_events(raw)
    return events[0][1]["turn_id"] if events and events[0][0] == "start" else None


def leave_loop(base: str, token: str, project: int, stop: threading.Event, out: list) -> None:
    with httpx.Client(base_url=base, headers=bearer(token), trust_env=False, timeout=60) as c:
        while not stop.is_set():
            out.append(leave_after_start(c, project))


def test_a_rolling_deploy_under_streaming_load_loses_and_interrupts_nothing(cluster, fake):
    """The documented procedure (docs/deploy.md), as ``make cluster`` does it on SIGHUP: each
    node in turn gets SIGTERM, drains its replies, exits and starts again, and the next waits
    until HAProxy sends the first one requests. Six clients stream replies of ~1.5 s through
    HAProxy the whole time, and two more leave each reply after a few words (it goes on,
    detached), as does one longer reply started on node a just before: every request is
    answered, every reply completes."""
    fake.reset()
    sizes = log_sizes(cluster)
    users = []
    for _ in range(3):
        _, token = one_user(cluster.url)
        users.append((token, new_project(cluster.url, token)))
    # First, on node a (restarted first), a reply of ~8 s whose client leaves: it outlives
    # every stream in flight there when the node is told to stop.
    fake.script("responses", Scenario(deltas=[f"d{i} " for i in range(160)], token_delay_ms=50))
    with httpx.Client(base_url=cluster.node("a"), headers=bearer(users[0][0]),
                      trust_env=False, timeout=60) as client:  # fmt: skip
        left: list[int | None] = [leave_after_start(client, users[0][1])]
    reply = [f"r{i} " for i in range(30)]
    fake.script("responses", *[Scenario(deltas=reply, ttft_ms=100, token_delay_ms=45)] * 600)
    pids = {name: node["pid"] for name, node in cluster.state["nodes"].items()}
    outcomes: list[Outcome] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=stream_loop, args=(cluster.url, *users[i % 3], stop, outcomes))
        for i in range(6)
    ] + [
        threading.Thread(target=leave_loop, args=(cluster.url, *users[i], stop, left))
        for i in range(2)
    ]
    for t in threads:
        t.start()
    time.sleep(2.0)
    began = time.monotonic()
    lines = ask_runner(cluster, signal.SIGHUP, "nodes restarted")
    took = time.monotonic() - began
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(60)
    report = {
        "streams": len(outcomes),
        "left": len(left),
        "served_by": dict(Counter(o.served_by for o in outcomes)),
        "restart_s": round(took, 1),
        "steps": [line for line in lines if "serving again" in line],
        "failed": [
            {"status": o.status, "error": o.error, "by": o.served_by, "body": o.body[-300:]}
            for o in outcomes
            if o.error or o.status != 200
        ],
    }
    print("rolling deploy:", json.dumps(report))  # noqa: T201
    (cluster.workdir / "rolling-deploy.json").write_text(json.dumps(report, indent=2))

    new_pids = {name: node["pid"] for name, node in cluster.state["nodes"].items()}
    assert all(new_pids[name] != pids[name] for name in pids)  # both nodes restarted
    assert report["failed"] == []
    ends = Counter(o.events[-1][0] if o.events else None for o in outcomes)
    assert ends == {"done": len(outcomes)}, ends
    not_complete = [
        o.events[-1][1]["message"]
        for o in outcomes
        if o.events[-1][1]["message"]["status"] != "complete"
    ]
    assert not_complete == [], unusual(cluster, sizes)
    assert left and None not in left  # every reply a leaving client started had started
    engine = cluster.engine()
    deadline = time.monotonic() + 20  # the replies left behind finish on their own
    while True:
        with engine.connect() as conn:
            statuses = Counter(
                status
                for (status,) in conn.execute(
                    text("SELECT m.status FROM messages m JOIN conversations c"
                         " ON c.id = m.conversation_id WHERE m.role = 'assistant'"
                         " AND c.project_id IN :p").bindparams(bindparam("p", expanding=True)),
                    {"p": [project for _, project in users]},
                )
            )  # fmt: skip
        if not statuses["streaming"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    engine.dispose()
    assert statuses == {"complete": len(outcomes) + len(left)}, statuses
    # Both nodes serve again.
    served = {
        httpx.get(f"{cluster.url}/healthz", trust_env=False).headers["X-Served-By"]
        for _ in range(4)
    }
    assert served == {"a", "b"}


class Follower(threading.Thread):
    """One SSE response read to its end; the time its last event came."""

    def __init__(self, method: str, url: str, token: str, **kw) -> None:
        super().__init__(daemon=True)
        self.method, self.url, self.kw = method, url, kw
        self.headers = {**bearer(token), **kw.pop("headers", {})}
        self.raw = ""
        self.ended_at = 0.0

    def run(self) -> None:
        with contextlib.suppress(httpx.HTTPError), httpx.Client(trust_env=False, timeout=60) as c:
            with c.stream(self.method, self.url, headers=self.headers, **self.kw) as r:
                for chunk in r.iter_text():
                    self.raw += chunk
        self.ended_at = time.monotonic()

    def events(self) -> list[tuple[str, dict]]:
        return complete_events(self.raw)

    def text(self) -> str:
        return "".join(d["text"] for n, d in self.events() if n == "delta")

    def last_id(self) -> str:
        return re.findall(r"^id: (\S+)$", self.raw[: self.raw.rfind("\n\n")], re.M)[-1]


def test_node_b_killed_readers_elsewhere_are_told_within_5_s_and_no_text_is_lost(cluster, fake):
    """``kill -9`` of node B with three replies streaming from it: readers already on node A,
    and readers resuming through HAProxy from the last event their cut stream had, end with
    ``interrupted`` within 5 s (the writer's heartbeat, not the 30 s lease), and each reply is
    stored with at least the text every reader of it was shown. Then B is started again."""
    fake.reset()
    fake.script("responses", *[Scenario(deltas=[f"k{i} " for i in range(400)],
                                        token_delay_ms=20)] * 3)  # fmt: skip
    _, token = one_user(cluster.url)
    project = new_project(cluster.url, token)
    on_b = [
        Follower("POST", f"{cluster.node('b')}/api/projects/{project}/chat", token,
                 json={"message": f"long {i}", "stream": True})
        for i in range(3)
    ]  # fmt: skip
    for f in on_b:
        f.start()
    deadline = time.monotonic() + 20
    while not all(f.raw.count("event: delta") >= 10 for f in on_b):
        assert time.monotonic() < deadline, [f.raw[-200:] for f in on_b]
        time.sleep(0.05)
    turns = [f.events()[0][1]["turn_id"] for f in on_b]
    on_a = [Follower("GET", f"{cluster.node('a')}/api/turns/{t}/events", token) for t in turns]
    for f in on_a:
        f.start()
    time.sleep(0.5)
    os.killpg(cluster.state["nodes"]["b"]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    for f in on_b:
        f.join(10)
    resumed = [
        Follower("GET", f"{cluster.url}/api/turns/{t}/events", token,
                 headers={"Last-Event-ID": f.last_id()})
        for t, f in zip(turns, on_b, strict=True)
    ]  # fmt: skip
    for f in resumed:
        f.start()
    for f in [*on_a, *resumed]:
        f.join(30)
    told = [round(f.ended_at - killed, 2) for f in [*on_a, *resumed]]
    with cluster.engine().connect() as conn:
        stored = dict(
            conn.execute(
                text("SELECT id, content FROM messages WHERE id IN :ids AND status = 'interrupted'")
                .bindparams(bindparam("ids", expanding=True)),
                {"ids": turns},
            ).all()
        )  # fmt: skip
    seen = [
        (len(f.text().split()), len(a.text().split()), len((f.text() + r.text()).split()))
        for f, a, r in zip(on_b, on_a, resumed, strict=True)
    ]
    report = {
        "told_after_s": told,
        "stored_words": [len(stored.get(t, "").split()) for t in turns],
        "seen_words_cut_on_a_resumed": seen,
    }
    print("kill -9 of node b:", json.dumps(report))  # noqa: T201
    (cluster.workdir / "kill-b.json").write_text(json.dumps(report, indent=2))
    lines = ask_runner(cluster, "start nodes", "nodes started")

    for f in [*on_a, *resumed]:
        name, data = f.events()[-1]
        assert name == "error" and data["error"]["code"] == "interrupted", f.raw[-300:]
    assert max(told) < 5, told
    assert set(stored) == set(turns)
    for turn, cut, there, again in zip(turns, on_b, on_a, resumed, strict=True):
        assert cut.text() and stored[turn].startswith(cut.text() + again.text())
        assert stored[turn].startswith(there.text())
    assert any("node b started again" in line for line in lines)


# --- node A dies under load --------------------------------------------------------------------


@dataclass
class Outcome:
    op: str
    started: float
    ended: float = 0.0
    status: int | None = None
    served_by: str | None = None
    retry_after: str | None = None
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
                out.retry_after = r.headers.get("Retry-After")
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
            out.retry_after = r.headers.get("Retry-After")
    except httpx.HTTPError as exc:
        out.error = type(exc).__name__
    out.ended = time.monotonic()
    if op == "stream":
        out.events = complete_events(out.body)
    return out


# --- a shared service down under load ----------------------------------------------------------

POSTGRES_OUTAGE_SECONDS = 15
STORAGE_OUTAGE_SECONDS = 5
REDIS_OUTAGE_SECONDS = 20
BACKOFF_SECONDS = 0.2  # a client's pause after a 503 (Retry-After says 5 s: these probe more)
OPS = ["stream", "chat", "upload", "list"]


@contextlib.contextmanager
def load(cluster, users, ops, clients: int = 6):
    """``clients`` threads sending ``ops`` in turn through HAProxy until the block ends; yields
    the list their outcomes go into."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop(i: int) -> None:
        token, project = users[i % len(users)]
        with httpx.Client(
            base_url=cluster.url, headers=bearer(token), trust_env=False, timeout=60
        ) as client:
            n = 0
            while not stop.is_set():
                out = one_request(client, ops[(i + n) % len(ops)], project, n)
                n += 1
                with lock:
                    outcomes.append(out)
                if out.status == 503 or out.error:
                    stop.wait(BACKOFF_SECONDS)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    assert not any(t.is_alive() for t in threads)


def first_success_after(outcomes: list[Outcome], since: float, ops: set[str]) -> float:
    """When the first request of ``ops`` sent after ``since`` succeeded (waits for one)."""
    deadline = time.monotonic() + 60
    while True:
        done = [o.ended for o in list(outcomes)
                if o.op in ops and o.started >= since and o.status in (200, 201)]  # fmt: skip
        if done:
            return min(done)
        assert time.monotonic() < deadline, "the cluster did not serve again"
        time.sleep(0.05)


def failures_are_clean_json_503s(
    outcomes: list[Outcome], code: str, logged: Callable[[], str] = str
) -> Counter:
    """Every answer is a success or the app's JSON 503 (``code``, with Retry-After), answered
    by a node (not HAProxy, which would mean it took the nodes out); no 500, no HTML, no
    connection cut. ``logged`` gives what the cluster logged, for a failure's message. Returns
    the 503s by operation."""
    refused = [o for o in outcomes if o.status == 503]
    wrong = [
        vars(o)
        for o in outcomes
        if o.status not in (200, 201, 503)
        or o.error
        or (o.status == 503 and (o.served_by not in ("a", "b") or not o.retry_after))
    ]
    wrong += [vars(o) for o in refused if json.loads(o.body)["error"]["code"] != code]
    assert not wrong, (Counter(o.status for o in outcomes), wrong, logged())
    assert all(int(o.retry_after) > 0 for o in refused)
    return Counter(o.op for o in refused)


def unusual(cluster, sizes: dict[str, int]) -> str:
    """What the cluster logged since ``log_sizes``, for a failure's message: the nodes'
    tracebacks and what HAProxy logged other than a normally ended request."""
    found = tracebacks(logged_since(cluster, sizes))
    with open(cluster.workdir / "haproxy.log", errors="replace") as log:
        found += [line for line in log if " ---- " not in line]
    return "\n".join(found)


def acknowledged_are_stored(
    cluster, outcomes: list[Outcome], projects: tuple[int, ...], *, every_reply_ends=False
) -> tuple[dict, set]:
    """Every message, reply and file the cluster acknowledged is stored once, and every reply
    holds at least the text its reader saw (a stream cut short: what was shown, or more).
    ``every_reply_ends``: also wait for replies no client saw start (a dead node's, ended by
    the lease sweep). Returns the projects' messages (id: role, status, content) and the
    acknowledged messages' texts."""
    said, seen, finished, files = set(), {}, {}, {}
    for o in outcomes:
        if o.op == "stream" and o.events and o.events[0][0] == "start":
            assert o.events[0][1]["user_message"]["content"] == o.said
            said.add(o.said)
            turn = o.events[0][1]["turn_id"]
            seen[turn] = "".join(d["text"] for name, d in o.events if name == "delta")
            if o.events[-1][0] == "done":
                finished[turn] = o.events[-1][1]["message"]["content"]
        elif o.op == "chat" and o.status == 200:
            body = json.loads(o.body)
            said.add(o.said)
            finished[body["message"]["id"]] = body["reply"]
        elif o.op == "upload" and o.status == 201:
            files[json.loads(o.body)["id"]] = (o.project, o.sent)
    engine = cluster.engine()
    deadline = time.monotonic() + 30  # replies spooled while the database was away
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
            stored_files = {
                r.id: (r.project_id, r.stored_name, r.sha256)
                for r in conn.execute(text("SELECT id, project_id, stored_name, sha256 FROM files"))
            }
        waited = messages if every_reply_ends else (*seen, *finished)
        pending = [m for m in waited if messages.get(m, ("", "streaming"))[1]
                   in ("streaming", "stopping")]  # fmt: skip
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    engine.dispose()
    assert pending == []
    said_stored = Counter(content for role, _, content in messages.values() if role == "user")
    assert all(said_stored[content] == 1 for content in said)
    assert set(said_stored.values()) <= {1}
    for mid, content in finished.items():
        assert messages[mid] == ("assistant", "complete", content)
    for mid, shown in seen.items():
        assert messages[mid][2].startswith(shown), (messages[mid], shown)
    for fid, (project, sent) in files.items():
        assert stored_files[fid][0] == project
        assert stored_files[fid][2] == hashlib.sha256(sent).hexdigest()
        assert stored_bytes(cluster.state, project, stored_files[fid][1]) == sent
    return messages, said


def tracebacks(logged: str) -> list[str]:
    """The tracebacks in a node log, each with the line that announced it."""
    lines = logged.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = i + 1
            while end < len(lines) and (lines[end][:1] in (" ", "") or "Error" in lines[end]):
                end += 1
            found.append("\n".join(lines[max(0, i - 1) : end + 1]))
    return found


def log_sizes(cluster) -> dict[str, int]:
    return {n: Path(node["log"]).stat().st_size for n, node in cluster.state["nodes"].items()}


def logged_since(cluster, sizes: dict[str, int]) -> str:
    """What the nodes logged since ``log_sizes`` was taken."""
    logged = ""
    for name, size in sizes.items():
        with open(cluster.state["nodes"][name]["log"], "rb") as log:
            log.seek(size)
            logged += log.read().decode(errors="replace")
    return logged


def users_with_projects(cluster, count: int = 3) -> list[tuple[str, int]]:
    users = []
    for _ in range(count):
        _, token = one_user(cluster.url)
        users.append((token, new_project(cluster.url, token)))
    return users


def test_postgres_down_under_load_is_answered_with_json_503s_and_loses_nothing(cluster, fake):
    """The database every node shares stops for POSTGRES_OUTAGE_SECONDS under streams, chats,
    uploads and lists: both nodes stay in the load balancer (its check is the node's own), so
    every refusal is the app's JSON 503 with Retry-After, never a 500 or HAProxy's page; the
    runner says the database is gone and back; replies finished meanwhile are stored when it
    is back; the cluster serves again at once."""
    fake.reset()
    reply = [f"p{i} " for i in range(30)]
    fake.script("responses", *[Scenario(deltas=reply, ttft_ms=100, token_delay_ms=20)] * 2000)
    users = users_with_projects(cluster)
    email, _ = one_user(cluster.url)
    sizes = log_sizes(cluster)
    browser = httpx.Client(base_url=cluster.url, trust_env=False, timeout=30)
    assert log_in(browser, email).status_code == 302
    with contextlib.closing(browser), load(cluster, users, OPS) as outcomes:
        time.sleep(2.0)
        since = len(cluster.output)
        cluster.command("stop postgres", "postgres stopped")
        stopped_at = time.monotonic()
        cluster.wait_for("PostgreSQL (postgres) does not answer", since, timeout=5)
        page = browser.get("/")  # a page: the app's own, with Retry-After
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert int(page.headers["Retry-After"]) > 0 and "X-Request-ID" in page.headers
        time.sleep(max(0.0, POSTGRES_OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        restarting_at = time.monotonic()
        cluster.command("start postgres", "postgres started")
        started_at = time.monotonic()
        cluster.wait_for("PostgreSQL (postgres) answers again", since, timeout=5)
        back_at = first_success_after(outcomes, started_at, {"list", "chat", "stream", "upload"})
        time.sleep(2.0)
    during = [o for o in outcomes if o.started >= stopped_at and o.ended < restarting_at]
    after = [o for o in outcomes if o.started >= back_at + 1.0]
    refused = failures_are_clean_json_503s(
        outcomes, "database_unavailable", lambda: unusual(cluster, sizes)
    )
    report = {
        "requests": len(outcomes),
        "during_outage": len(during),
        "served_during_outage": dict(Counter(o.served_by for o in during)),
        "refused_503_by_op": dict(refused),
        "ok_during_outage": sum(o.status in (200, 201) for o in during),
        "streams_across_the_stop": sum(
            o.op == "stream" and o.started < stopped_at < o.ended for o in outcomes
        ),
        "of_which_done": sum(
            o.op == "stream"
            and o.started < stopped_at < o.ended
            and o.events[-1:] != []
            and o.events[-1][0] == "done"
            for o in outcomes
        ),
        "outage_s": round(restarting_at - stopped_at, 1),
        "start_took_s": round(started_at - restarting_at, 2),
        "service_back_after_s": round(back_at - started_at, 2),
    }
    print("postgres down under load:", json.dumps(report))  # noqa: T201
    (cluster.workdir / "postgres-down.json").write_text(json.dumps(report, indent=2))
    assert sum(refused.values()) > 0 and {o.served_by for o in during} == {"a", "b"}
    assert after and all(o.status in (200, 201) for o in after)
    acknowledged_are_stored(cluster, outcomes, tuple(project for _, project in users))
    logged = logged_since(cluster, sizes)  # an outage is expected: one line each, no traceback
    assert "Traceback" not in logged and "status=500" not in logged


def test_storage_down_under_load_refuses_uploads_with_json_503s_and_loses_nothing(cluster, fake):
    """The file store stops (then takes its own time to start): uploads answer the app's JSON
    503 with Retry-After, chats and lists go on, every file acknowledged before or after is
    in the store, and uploads work again once it is back."""
    fake.reset()
    fake.script("responses", *[Scenario(text="Fine.", ttft_ms=50)] * 2000)
    users = users_with_projects(cluster, 2)
    sizes = log_sizes(cluster)
    with load(cluster, users, ["upload", "chat", "upload", "list"], clients=4) as outcomes:
        time.sleep(1.5)
        since = len(cluster.output)
        cluster.command("stop storage", "storage stopped")
        stopped_at = time.monotonic()
        cluster.wait_for("the file store (storage) does not answer", since, timeout=5)
        time.sleep(STORAGE_OUTAGE_SECONDS)
        restarting_at = time.monotonic()
        cluster.command("start storage", "storage started")
        started_at = time.monotonic()
        cluster.wait_for("the file store (storage) answers again", since, timeout=5)
        back_at = first_success_after(outcomes, started_at, {"upload"})
        time.sleep(1.5)
    during = [o for o in outcomes if o.started >= stopped_at and o.ended < restarting_at]
    refused = failures_are_clean_json_503s(
        outcomes, "storage_unavailable", lambda: unusual(cluster, sizes)
    )
    report = {
        "requests": len(outcomes),
        "during_outage": len(during),
        "refused_503_by_op": dict(refused),
        "ok_during_outage_by_op": dict(Counter(o.op for o in during if o.status in (200, 201))),
        "outage_s": round(restarting_at - stopped_at, 1),
        "start_took_s": round(started_at - restarting_at, 2),
        "uploads_back_after_s": round(back_at - started_at, 2),
    }
    print("storage down under load:", json.dumps(report))  # noqa: T201
    (cluster.workdir / "storage-down.json").write_text(json.dumps(report, indent=2))
    assert set(refused) == {"upload"}
    assert {o.op for o in during if o.status == 200} >= {"chat", "list"}
    after = [o for o in outcomes if o.started >= back_at + 0.5]
    assert after and all(o.status in (200, 201) for o in after)
    acknowledged_are_stored(cluster, outcomes, tuple(project for _, project in users))
    logged = logged_since(cluster, sizes)  # an outage is expected: one line each, no traceback
    assert "Traceback" not in logged and "status=500" not in logged


def test_redis_down_under_load_every_request_is_served_and_nothing_is_lost(cluster, fake):
    """Redis (turn events, Stop, reader caps, rate-limit counts, revocations) stops for
    REDIS_OUTAGE_SECONDS under streams, chats, uploads and lists, with rate limiting on: no
    request fails (rate limits are counted per process meanwhile), both nodes stay in rotation,
    the runner and each node say so once, and when Redis is back (empty, as a restarted cache
    is) every node uses it again."""
    fake.reset()
    users = users_with_projects(cluster)
    sizes = log_sizes(cluster)
    with load(cluster, users, OPS) as outcomes:
        time.sleep(1.0)
        since = len(cluster.output)
        cluster.command("stop redis", "redis stopped")
        stopped_at = time.monotonic()
        cluster.wait_for("Redis (redis) does not answer", since, timeout=5)
        time.sleep(REDIS_OUTAGE_SECONDS / 2)
        during = {n: httpx.get(f"{cluster.node(n)}/readyz", trust_env=False) for n in NODES}
        time.sleep(max(0.0, REDIS_OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        restarting_at = time.monotonic()
        cluster.command("start redis", "redis started")
        cluster.wait_for("Redis (redis) answers again", since, timeout=5)
        time.sleep(2.0)
    in_outage = [o for o in outcomes if o.ended >= stopped_at and o.started < restarting_at]
    failed = [o for o in outcomes if o.error or (o.status or 0) >= 400]
    report = {
        "requests": len(outcomes),
        "during_outage": dict(Counter(o.op for o in in_outage)),
        "served_by": dict(Counter(o.served_by for o in in_outage)),
        "failed": [(o.op, o.status, o.error, o.body[:120]) for o in failed],
    }
    print("redis down under load:", json.dumps(report))  # noqa: T201
    (cluster.workdir / "redis-down.json").write_text(json.dumps(report, indent=2))
    assert failed == [] and set(report["served_by"]) == {"a", "b"}
    assert set(OPS) <= set(report["during_outage"])
    for o in outcomes:
        if o.op == "stream":
            assert [o.events[0][0], o.events[-1][0]] == ["start", "done"], o.body
    acknowledged_are_stored(cluster, outcomes, tuple(project for _, project in users))
    for name, ready in during.items():
        assert ready.status_code == 200, name  # the node still serves: it stays in rotation
        assert ready.json()["checks"]["ratelimit"] == "unavailable (counting per process)"
        assert ready.json()["checks"]["redis"] == "unavailable"

    # Redis back: every node counts there again (Flask-Limiter looks after 1, 2, 4 … 32 s).
    deadline = time.monotonic() + 45
    while True:
        checks = [
            httpx.get(f"{cluster.node(n)}/readyz", trust_env=False).json()["checks"] for n in NODES
        ]
        if all(c["ratelimit"] == "ok" and c["redis"] == "ok" for c in checks):
            break
        assert time.monotonic() < deadline, checks
        time.sleep(0.5)
    logged = logged_since(cluster, sizes)
    workers = sum(node["workers"] for node in cluster.state["nodes"].values())
    # The only errors logged (with their tracebacks): requests that raced the switch to
    # in-memory counts, served uncounted; at most one per client.
    errors = [line for line in logged.splitlines() if " ERROR " in line]
    assert all("Swallowing error" in line for line in errors) and len(errors) <= 6, errors
    assert "status=500" not in logged
    # Said once per outage and process, not once per request, turn or reconnection attempt:
    # the rate limits, the two pub/sub listeners (Stop, revocations) and the turn broker.
    assert logged.count("Rate limit storage unreachable") <= workers
    assert logged.count("listener: Redis unavailable") <= 2 * workers
    assert logged.count("app.chat.broker: Redis unavailable") <= workers


def test_node_a_killed_under_load_traffic_moves_to_b_and_nothing_acknowledged_is_lost(
    cluster, fake
):
    fake.reset()
    # Replies that take a while (0.1 s + 30 x 20 ms), so some are in flight when A dies.
    reply = [f"t{i} " for i in range(30)]
    fake.script("responses", *[Scenario(deltas=reply, ttft_ms=100, token_delay_ms=20)] * 400)
    users = users_with_projects(cluster)
    with load(cluster, users, OPS, clients=8) as outcomes:
        time.sleep(2.0)
        killed_at = time.monotonic()
        os.killpg(cluster.state["nodes"]["a"]["pid"], signal.SIGKILL)
        # A is dead once its port refuses connections (its processes are gone): until then it
        # may still accept a request, which then fails with it.
        a_port = urlsplit(cluster.node("a")).port
        while listening(a_port):
            assert time.monotonic() - killed_at < 5
            time.sleep(0.001)
        dead_at = time.monotonic()
        time.sleep(3.0)

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

    # Everything acknowledged is in PostgreSQL and the file store; every reply ended: complete,
    # or interrupted where A died (by B's lease sweep).
    messages, said = acknowledged_are_stored(
        cluster, outcomes, tuple(project for _, project in users), every_reply_ends=True
    )
    assert said and any(m[:2] == ("assistant", "complete") for m in messages.values())
    said_stored = Counter(content for role, _, content in messages.values() if role == "user")
    # Nothing was stored twice (every message is unique), so no request was sent to both
    # nodes; messages stored but not acknowledged are those that were on A.
    assert set(said_stored.values()) == {1}
    assert len(said_stored) - len(said) <= len(on_a)
    assert {status for role, status, _ in messages.values() if role == "assistant"} <= {
        "complete",
        "interrupted",
    }


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
