"""``make cluster``: PromptHub as a multi-node deployment runs it, on one machine.

    python -m tools.cluster [--port 8080] [--workers 2] [--workdir instance/cluster]

Two gunicorn nodes (``a`` and ``b``, each a "machine": its own master, workers and reply spool)
behind HAProxy (round robin, no stickiness, health checks on ``/readyz/node``), sharing one
PostgreSQL, one Redis and one S3 file store. ``DATABASE_URL``, ``REDIS_URL`` and ``STORAGE_URL``
(with ``STORAGE_S3_ENDPOINT_URL`` and the ``AWS_*`` keys) from the environment are used when
given; otherwise a private PostgreSQL (data kept in ``<workdir>/postgres``), a private
``redis-server`` and a private SeaweedFS (data in ``<workdir>/seaweed``, bucket ``prompthub``)
are started on ports of their own. Migrations run once, before the nodes
start. Both nodes get the same ``SECRET_KEY`` and ``JWT_SECRET`` (from the environment, else
generated once into ``<workdir>/secrets.json``), ``TRUST_PROXY=true``, ``REDIS_URL`` and Redis
rate-limit counts. Every other setting in the environment (provider keys, limits) is passed on.
Each node has a ``flask worker`` beside it (background jobs from the Redis queue; log
``<workdir>/worker-<node>.log``), started once the nodes answer and stopped after them.

It prints the URL and what runs where, writes the same as JSON to ``<workdir>/cluster.json``
(the cluster test reads it), and runs until Ctrl-C (or SIGTERM), which stops HAProxy, the nodes,
Redis, SeaweedFS and PostgreSQL; so does a failure while starting. A node that dies is
reported and left dead: the load balancer sends its traffic to the other one. A shared service
that stops answering (a TCP connection to it fails) is reported with what the nodes do
meanwhile, and again when it is back. Lines typed on standard input are fault drills for the
services it started: ``stop postgres`` / ``start postgres`` (also ``redis``, ``storage``). One
cluster per folder: a lock on ``<workdir>/cluster.lock`` refuses a second one plainly.
``restart nodes`` restarts the nodes one after the other, as a rolling deploy does
(``Cluster.rolling_restart``: docs/deploy.md "Deploying without interruptions"; ``SIGHUP`` to
this command does the same), ``start nodes`` starts nodes that died.

The same ``Cluster`` serves the cluster test (``tests/test_cluster.py``, through this command)
and the benchmark (``python -m tools.bench.harness cluster``). docs/deploy.md "Several nodes"
explains the topology and each setting; HAProxy's configuration is ``haproxy_config``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

from tools.servers import BIN, ROOT, PrivatePostgres, PrivateRedis, free_port

NODES = ("a", "b")
DATABASE = "prompthub"
NODE_STOP_SECONDS = 40  # gunicorn's graceful_timeout (30 s) for open requests, and a margin
# The shared services, as the runner's commands name them (``stop postgres``), with what the
# nodes do while one does not answer (the runner says so when it notices).
SERVICES = {
    "postgres": ("PostgreSQL", "requests that need the database answer 503 with Retry-After"),
    "redis": ("Redis", "the nodes serve without it, degraded (see /readyz)"),
    "storage": ("the file store", "uploads and downloads answer 503 with Retry-After"),
}
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "http": 80, "https": 443}


class ClusterError(RuntimeError):
    """The cluster could not start; the message says why and what to do."""


# --- the file store: the one place that says where the nodes keep files ---------------------

BUCKET = "prompthub"


def stored_bytes(state: Mapping[str, Any], project_id: int, stored_name: str) -> bytes:
    """The bytes the S3 store holds for a file row (the cluster test checks every upload)."""
    settings = state["storage"]
    bucket, _, prefix = settings["STORAGE_URL"].removeprefix("s3://").partition("/")
    key = "/".join(part for part in (prefix.strip("/"), str(project_id), stored_name) if part)
    client = _s3_client(tuple(sorted(settings.items())))
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


_S3_CLIENTS: dict[tuple[tuple[str, str], ...], Any] = {}


def _s3_client(settings: tuple[tuple[str, str], ...]):
    """One client per store (building one takes ~50 ms; the outage tests check hundreds of
    files), until ``close_s3_clients``."""
    import boto3

    if settings not in _S3_CLIENTS:
        given = dict(settings)
        _S3_CLIENTS[settings] = boto3.session.Session().client(
            "s3",
            endpoint_url=given.get("STORAGE_S3_ENDPOINT_URL") or None,
            aws_access_key_id=given.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=given.get("AWS_SECRET_ACCESS_KEY") or None,
            region_name=given.get("STORAGE_S3_REGION") or None,
        )
    return _S3_CLIENTS[settings]


def close_s3_clients() -> None:
    while _S3_CLIENTS:
        _S3_CLIENTS.popitem()[1].close()


# --- settings ----------------------------------------------------------------------------------


def cluster_secrets(workdir: Path, settings: Mapping[str, str]) -> dict[str, str]:
    """``SECRET_KEY`` and ``JWT_SECRET``: the environment's, else generated once into
    ``secrets.json`` (0600), so sessions and tokens survive a restart of the cluster. Every node
    must have the same ones: a session or token signed by one node is checked by the other."""
    path = workdir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for key in ("SECRET_KEY", "JWT_SECRET"):
        if not stored.get(key):
            stored[key] = secrets.token_urlsafe(48)
            changed = True
    if changed:
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=2) + "\n")
    given = {key: settings[key] for key in ("SECRET_KEY", "JWT_SECRET") if settings.get(key)}
    return {**stored, **given}


# HAProxy's own answers (no node could take the request, a node failed mid-request, a node too
# slow): JSON like the app's own errors under /api/, a short page elsewhere. Retry-After on 503.
HAPROXY_ERRORS = {
    502: ("bad_gateway", "The server handling this request went away before answering."),
    503: ("service_unavailable", "No server can answer right now. Please try again shortly."),
    504: ("gateway_timeout", "The server took too long to answer."),
}
HAPROXY_RETRY_AFTER_S = 5


def _haproxy_errors(html: bool) -> str:
    lines = []
    for status, (code, message) in HAPROXY_ERRORS.items():
        retry = f" hdr Retry-After {HAPROXY_RETRY_AFTER_S}" if status == 503 else ""
        if html:
            body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>PromptHub</title>"
                    f"<p>{message}</p></html>")  # fmt: skip
            kind = '"text/html; charset=utf-8"'
        else:
            body = json.dumps({"error": {"code": code, "message": message}})
            kind = "application/json"
        lines.append(
            f"    http-error status {status} content-type {kind}{retry} hdr Cache-Control no-store"
            f" string '{body}'"
        )
    return "\n".join(lines)


def haproxy_config(port: int, nodes: Mapping[str, int]) -> str:
    """HAProxy's configuration (docs/deploy.md explains each choice, with HAProxy's manual)."""
    checked = "\n".join(f"    server {name} 127.0.0.1:{p}" for name, p in nodes.items())
    tracking = "\n".join(
        f"    server {name} 127.0.0.1:{p} track nodes/{name}" for name, p in nodes.items()
    )
    return f"""\
# Written by `make cluster` (tools/cluster.py); docs/deploy.md "Several nodes" explains it.
global
    log stdout format raw local0 info
    maxconn 4096

defaults web
    mode http
    log global
    option httplog
    # One request per connection to a node: no idle connection to reuse just as the node
    # closes it, and a dead node is seen as a refused connection, which is safe to retry.
    option http-server-close
    option forwardfor
    # A refused connection is retried on the other node (only then: a request that reached a
    # node is never sent twice).
    retries 2
    option redispatch 1
    timeout connect 3s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 10s
    # Inactivity, not duration: a chat stream sends a keep-alive every CHAT_HEARTBEAT_SECONDS
    # (15 s); a non-streamed reply is silent until done (up to two provider calls of
    # LLM_TIMEOUT_SECONDS, 60 s each).
    timeout client 130s
    timeout server 130s
    timeout check 3s
    # HAProxy's own errors as the app's: JSON with Retry-After (the page backend: a page).
{_haproxy_errors(html=False)}

frontend prompthub
    bind 127.0.0.1:{port}
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http unless {{ ssl_fc }}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    # The request id: the client's when it is one sane value (as the app keeps it), else
    # HAProxy's own; logged here (the {{…}} field) and by the node that serves it.
    unique-id-format %{{+X}}o\\ %ci-%cp-%Ts-%rt-%pid
    acl one_id req.hdr_cnt(x-request-id) eq 1
    acl sane_id req.hdr(x-request-id) -m reg ^[A-Za-z0-9._-]{{1,64}}$
    http-request set-header X-Request-ID %[unique-id] unless one_id sane_id
    http-request capture req.hdr(x-request-id) len 64
    # Which node answered (HAProxy's own errors too): the cluster test reads it.
    http-after-response set-header X-Served-By %[srv_name]
    use_backend nodes if {{ path /api }} || {{ path_beg /api/ }}
    default_backend pages

backend nodes
    balance roundrobin
    # The node alone (process, schema): not the database every node shares, whose outage the
    # app answers itself with JSON 503s and Retry-After.
    option httpchk GET /readyz/node
    http-check expect status 200
    default-server check inter 2s fall 2 rise 2 observe layer4 error-limit 1 on-error mark-down
{checked}

backend pages
    # The same nodes for everything outside /api/, following the checks above; only its
    # error pages differ (HTML for browsers).
    balance roundrobin
{_haproxy_errors(html=True)}
{tracking}
"""


# --- the cluster -------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    """Two nodes behind HAProxy on shared PostgreSQL, Redis and files; ``start``/``stop``."""

    workdir: Path
    port: int = 0  # 0: a free port
    node_ports: tuple[int, int] = (0, 0)
    workers: int = 2  # gunicorn workers per node
    settings: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    database_url: str | None = None  # None: a private PostgreSQL
    redis_url: str | None = None  # None: a private redis-server
    storage: dict[str, str] = field(default_factory=dict)  # the S3 settings every node gets
    storage_note: str = "given"
    nodes: dict[str, Node] = field(default_factory=dict)
    postgres: str = "given"
    redis: str = "given"
    _stack: ExitStack = field(default_factory=ExitStack)
    _private: dict[str, Any] = field(default_factory=dict)  # service -> the server we started
    _lock: IO[str] | None = None
    _haproxy: subprocess.Popen | None = None
    _env: dict[str, dict[str, str]] = field(default_factory=dict)
    job_workers: dict[str, subprocess.Popen] = field(default_factory=dict)  # node -> flask worker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def haproxy_pid(self) -> int | None:
        return self._haproxy.pid if self._haproxy is not None else None

    def start(self) -> Cluster:
        """Everything up, or (on any failure, Ctrl-C included) everything started so far
        stopped again before the error goes on."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise ClusterError("HAProxy is needed: `make cluster-deps` installs it (Debian).")
        if self.database_url is None:
            pg = PrivatePostgres(self.workdir / "postgres")
            if not pg.initialised:
                pg.init()
            if (left := pg.server_pid()) is not None:
                raise ClusterError(
                    f"a PostgreSQL left by an earlier run still runs on {pg.data} (pid {left});"
                    f" stop it first: pg_ctl -D {pg.data} stop"
                )
            pg.start()
            self._stack.callback(lambda: pg.server_pid() is not None and pg.stop())
            self._private["postgres"] = pg
            self.database_url = pg.create_database(DATABASE)
            self.postgres = f"private, data in {pg.dir}"
        elif not self.database_url.startswith(("postgresql", "postgres:")):
            raise ClusterError("DATABASE_URL must be PostgreSQL: every node shares it.")
        if self.redis_url is None:
            redis = PrivateRedis().start()
            self._stack.callback(redis.stop)
            self._private["redis"] = redis
            self.redis_url = redis.url
            self.redis = "private"
        self._start_storage()
        self.port = self.port or free_port()
        ports = [p or free_port() for p in self.node_ports]
        self.nodes = {
            name: Node(name, port, self.workdir / f"node-{name}.log")
            for name, port in zip(NODES, ports, strict=True)
        }
        common = self._common_env()
        self._run_once(common, "db", "upgrade")  # migrations: once, before any node serves
        for node in self.nodes.values():
            self._env[node.name] = self._node_env(common, node)
            self._spawn(node)
        for node in self.nodes.values():
            self._wait_ready(node.url + "/readyz", node.proc, node.log_path)
        for node in self.nodes.values():
            self._spawn_job_worker(node.name)
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, {n.name: n.port for n in self.nodes.values()}))
        subprocess.run([haproxy, "-c", "-q", "-f", str(config)], check=True, capture_output=True)
        with (self.workdir / "haproxy.log").open("ab") as log:
            self._haproxy = subprocess.Popen(
                [haproxy, "-db", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(self.url + "/healthz", self._haproxy, self.workdir / "haproxy.log")
        self._write_state()

    def _start_storage(self) -> None:
        """The shared file store: ``STORAGE_URL`` (with its endpoint and keys) from the
        environment, else a private SeaweedFS (data kept in ``<workdir>/seaweed``) with a
        bucket ``prompthub``. Every node reads and writes the same objects."""
        keys = ("STORAGE_URL", "STORAGE_S3_ENDPOINT_URL", "STORAGE_S3_REGION",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # fmt: skip
        if self.settings.get("STORAGE_URL"):
            if not self.settings["STORAGE_URL"].startswith("s3://"):
                raise ClusterError("STORAGE_URL must be s3://bucket/prefix: every node shares it.")
            self.storage = {k: self.settings[k] for k in keys if self.settings.get(k)}
            return
        from tools.seaweed import SeaweedFS

        s3 = SeaweedFS(self.workdir / "seaweed")
        self._stack.callback(s3.stop)  # after the nodes (the stack closes once they stopped)
        s3.start()
        self._private["storage"] = s3
        if BUCKET not in {b["Name"] for b in s3.client().list_buckets().get("Buckets", [])}:
            s3.make_bucket(BUCKET)
        self.storage = s3.settings(BUCKET)
        self.storage_note = f"private SeaweedFS, data in {s3.workdir}"

    def _common_env(self) -> dict[str, str]:
        env = dict(self.settings)
        env.pop("TEST_DATABASE_URL", None)
        rate_limits = env.get("RATELIMIT_STORAGE_URI", "")
        assert self.redis_url is not None and self.database_url is not None
        env.update(
            APP_ENV=env.get("APP_ENV") or "production",
            # Plain HTTP on loopback here; behind TLS leave it unset (production: Secure).
            SESSION_COOKIE_SECURE=env.get("SESSION_COOKIE_SECURE") or "false",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            # Shared counts: a limit is one limit, whichever node a request reaches.
            RATELIMIT_STORAGE_URI=(
                rate_limits if rate_limits.startswith(("redis", "memcached")) else self.redis_url
            ),
            TRUST_PROXY="true",
            FLASK_APP="app",
            # Jobs on the shared Redis, run by each node's `flask worker`, not by gunicorn.
            QUEUE_IN_PROCESS="false",
            **cluster_secrets(self.workdir, env),
            **self.storage,
        )
        return env

    def _node_env(self, common: Mapping[str, str], node: Node) -> dict[str, str]:
        return {
            **common,
            "HOST": "127.0.0.1",  # reachable through HAProxy only (TRUST_PROXY trusts one hop)
            "PORT": str(node.port),
            "WEB_CONCURRENCY": str(self.workers),
            "REPLY_SPOOL_DIR": str(self.workdir / f"node-{node.name}" / "spool"),
            # Uploads are staged on the node's own disk, then put in the shared store.
            "STORAGE_STAGING_DIR": str(self.workdir / f"node-{node.name}" / "staging"),
            # Each node's workers' metric values (gunicorn.conf.py empties it at start);
            # /metrics on the node's own port, with METRICS_TOKEN from the environment.
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"node-{node.name}" / "metrics"),
        }

    def _run_once(self, env: Mapping[str, str], *args: str) -> str:
        result = subprocess.run(
            [str(BIN / "flask"), *args], cwd=ROOT, env=dict(env), capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ClusterError(f"flask {' '.join(args)} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def _spawn(self, node: Node) -> None:
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen(
                [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "app:create_app()"],
                cwd=ROOT,
                env=self._env[node.name],
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session and process group: Ctrl-C in the terminal reaches this runner
                # only (which stops the nodes in order), and ``kill`` ends the whole node.
                start_new_session=True,
            )

    def _spawn_job_worker(self, name: str) -> None:
        """The node's ``flask worker`` (background jobs from the shared Redis queue), beside
        its gunicorn as on a machine: it replays that node's reply spool. Not part of the node
        drills (``kill``, ``restart_node``): a machine's worker outlives its web server."""
        with (self.workdir / f"worker-{name}.log").open("ab") as log:
            self.job_workers[name] = subprocess.Popen(
                [str(BIN / "flask"), "worker"],
                cwd=ROOT,
                env=self._env[name],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @staticmethod
    def _wait_ready(url: str, proc: subprocess.Popen | None, log: Path, timeout=60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                    return
            if proc is None or proc.poll() is not None:
                raise ClusterError(f"{url} did not start; see {log}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{url} not ready after {timeout:.0f} s; see {log}")
            time.sleep(0.1)

    def _take_lock(self) -> None:
        """One cluster per folder: a second one would start a second PostgreSQL on the same
        data. An exclusive ``flock`` on ``cluster.lock``, held until ``stop`` (the kernel drops
        it when the process dies, however it dies), with the holder's pid for the message."""
        lock = (self.workdir / "cluster.lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise ClusterError(
                f"another `make cluster` is running in {self.workdir} (pid {holder}); stop it"
                " first (Ctrl-C in its terminal), or give this one another --workdir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def stop_service(self, name: str) -> None:
        """Stop a shared service this command started (a fault drill; its data stays):
        PostgreSQL's fast shutdown, Redis and SeaweedFS killed (``weed`` often ignores
        SIGTERM for seconds)."""
        server = self._service(name)
        if name == "storage":
            server.stop(grace=0)
        else:
            server.stop()

    def start_service(self, name: str) -> None:
        """Start it again, on the same port, with the same data (and keys, for the store)."""
        self._service(name).start()

    def _service(self, name: str):
        if name not in SERVICES:
            raise ClusterError(f"no service {name!r}; one of: {', '.join(SERVICES)}")
        if name not in self._private:
            raise ClusterError(f"{name} was given by the environment, not started here")
        return self._private[name]

    def silent_services(self) -> list[str]:
        """The shared services that do not accept a connection now (given ones too)."""
        addresses = {
            "postgres": self.database_url,
            "redis": self.redis_url,
            "storage": self.storage.get("STORAGE_S3_ENDPOINT_URL"),
        }
        return [name for name, url in addresses.items() if url and not _accepts(url)]

    def kill(self, name: str) -> None:
        """``kill -9`` of a whole node (master, workers and their children), as a machine
        that dies. The load balancer finds out by itself."""
        node = self.nodes[name]
        assert node.proc is not None
        os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=10)

    def start_node(self, name: str) -> None:
        """Start a node again (after ``kill``); HAProxy adds it back once its checks pass."""
        node = self.nodes[name]
        assert not node.alive, f"node {name} is running"
        self._spawn(node)
        self._wait_ready(node.url + "/readyz", node.proc, node.log_path)
        self._write_state()

    def restart_node(self, name: str) -> dict[str, float]:
        """One step of a rolling deploy (docs/deploy.md "Deploying without interruptions"):
        SIGTERM to the node's master, which stops accepting (new connections are refused and
        HAProxy sends them to the other node) while its workers drain their replies
        (``DRAIN_SECONDS``); once it has exited, start it again, and wait until HAProxy sends it
        requests. A node that is not running is only started. Returns how long each phase took."""
        node = self.nodes[name]
        took = {"stop_s": 0.0}
        began = time.monotonic()
        if node.alive:
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)  # the master; it signals its workers
            _end(node.proc, None, NODE_STOP_SECONDS, group=True)
            took["stop_s"] = time.monotonic() - began
        node.proc = None
        self._spawn(node)
        self._wait_ready(node.url + "/readyz", node.proc, node.log_path)
        took["start_s"] = time.monotonic() - began - took["stop_s"]
        self._wait_balanced(name)
        took["balanced_s"] = time.monotonic() - began - took["stop_s"] - took["start_s"]
        self._write_state()
        return {key: round(value, 2) for key, value in took.items()}

    def _wait_balanced(self, name: str, timeout: float = 30.0) -> None:
        """Until HAProxy has sent a request to node ``name`` (its checks passed again)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(self.url + "/healthz", timeout=2, trust_env=False)
                if r.headers.get("X-Served-By") == name:
                    return
            if time.monotonic() > deadline:
                raise ClusterError(f"HAProxy sent node {name} nothing for {timeout:.0f} s")
            time.sleep(0.2)

    def rolling_restart(self, say=lambda line: None) -> None:
        """Every node restarted one after the other (``restart_node``), never two at once: the
        other node serves meanwhile. Dead nodes are started first."""
        order = sorted(self.nodes.values(), key=lambda n: n.alive)
        for node in order:
            say(f"restarting node {node.name}…")
            took = self.restart_node(node.name)
            say(f"node {node.name} serving again: {json.dumps(took)}")

    def start_dead_nodes(self, say=lambda line: None) -> None:
        for node in self.nodes.values():
            if not node.alive:
                took = self.restart_node(node.name)
                say(f"node {node.name} started again: {json.dumps(took)}")

    def state(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "haproxy": {"pid": self.haproxy_pid,
                        "config": str(self.workdir / "haproxy.cfg"),
                        "log": str(self.workdir / "haproxy.log")},
            "nodes": {
                n.name: {"url": n.url, "pid": n.proc.pid if n.proc else None,
                         "log": str(n.log_path), "workers": self.workers,
                         "job_worker": (self.job_workers[n.name].pid
                                        if n.name in self.job_workers else None)}
                for n in self.nodes.values()
            },
            "database_url": self.database_url,
            "postgres": self.postgres,
            "redis_url": self.redis_url,
            "redis": self.redis,
            "storage": self.storage,
            "storage_note": self.storage_note,
        }  # fmt: skip

    def _write_state(self) -> None:
        (self.workdir / "cluster.json").write_text(json.dumps(self.state(), indent=2) + "\n")

    def stop(self) -> None:
        """HAProxy first (no new traffic), then the nodes (gunicorn's graceful stop: open
        requests may finish), then Redis and PostgreSQL. Safe to call twice, and on a
        cluster that only half started or lost a node."""
        if self._haproxy is not None:
            _end(self._haproxy, signal.SIGTERM, 10)
            self._haproxy = None
        running = [n for n in self.nodes.values() if n.proc is not None]
        for node in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGTERM)
        for node in running:
            _end(node.proc, None, NODE_STOP_SECONDS, group=True)
            node.proc = None
        for worker in self.job_workers.values():  # SIGINT: running jobs end first
            _end(worker, signal.SIGINT, NODE_STOP_SECONDS, group=True)
        self.job_workers.clear()
        self._stack.close()
        if self._lock is not None:
            self._lock.close()  # the lock goes with the file
            self._lock = None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(url: str) -> bool:
    """Whether the host and port of ``url`` accept a TCP connection (within a second)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return True  # a Unix socket (PostgreSQL's default): not probed
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.split("+")[0], 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=1):
            return True
    except OSError:
        return False


def _end(proc: subprocess.Popen, sig: int | None, timeout: float, *, group=False) -> None:
    """Send ``sig`` (if any), wait up to ``timeout``, then SIGKILL (the group, for a node)."""
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        proc.wait(timeout=10)
    if group:  # workers left behind by a master that died first
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# --- command line ------------------------------------------------------------------------------


def describe(cluster: Cluster, providers: str) -> str:
    state = cluster.state()
    lines = [
        f"PromptHub cluster: {cluster.url}",
        f"  HAProxy     {cluster.url} -> nodes a and b (round robin, checks on /readyz);"
        f" config {state['haproxy']['config']}",
    ]
    for name, node in state["nodes"].items():
        lines.append(
            f"  node {name}      {node['url']} gunicorn pid {node['pid']},"
            f" {node['workers']} workers; log {node['log']};"
            f" job worker pid {node['job_worker']}"
        )
    lines += [
        f"  PostgreSQL  {state['database_url']} ({state['postgres']})",
        f"  Redis       {state['redis_url']} ({state['redis']})",
        f"  files       {state['storage'].get('STORAGE_URL')}"
        f" at {state['storage'].get('STORAGE_S3_ENDPOINT_URL', 'AWS')} ({state['storage_note']})",
        f"  chat        {' '.join(line for line in providers.splitlines() if '===' not in line)}",
        "Drills: type `stop postgres` (or redis, storage), `start postgres`, `restart nodes`"
        f" (rolling; also kill -HUP {os.getpid()}) or `start nodes` (those that died) here.",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _read_commands() -> queue.Queue[str]:
    """Lines typed on standard input, read by a thread (none once it is closed)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in sys.stdin:
                if line.strip():
                    lines.put(line.strip())

    if sys.stdin is not None:
        threading.Thread(target=read, daemon=True).start()
    return lines


def _say(line: str) -> None:
    print(line, flush=True)  # noqa: T201


def _run_command(cluster: Cluster, line: str) -> None:
    """``stop NAME`` / ``start NAME`` for a shared service this command started;
    ``restart nodes`` (one after the other) and ``start nodes`` (those that died)."""
    verb, _, name = line.partition(" ")
    try:
        if line == "restart nodes":
            cluster.rolling_restart(_say)
            _say("nodes restarted")
            return
        if line == "start nodes":
            cluster.start_dead_nodes(_say)
            _say("nodes started")
            return
        if verb == "stop":
            cluster.stop_service(name.strip())
        elif verb == "start":
            cluster.start_service(name.strip())
        else:
            raise ClusterError(
                f"unknown command {line!r}: stop|start {'|'.join(SERVICES)}, restart|start nodes"
            )
    except (ClusterError, RuntimeError, AssertionError, subprocess.SubprocessError) as exc:
        print(f"{line}: failed: {exc}", flush=True)  # noqa: T201
        return
    print(f"{name.strip()} {verb}ed" if verb == "start" else f"{name.strip()} stopped", flush=True)  # noqa: T201


def _report_services(cluster: Cluster, silent: dict[str, float]) -> None:
    """Say when a shared service stops answering, what the nodes do meanwhile, and when it
    answers again (and after how long)."""
    now = time.monotonic()
    down = cluster.silent_services()
    for name in down:
        if name not in silent:
            silent[name] = now
            label, meanwhile = SERVICES[name]
            print(f"{label} ({name}) does not answer: {meanwhile} until it is back", flush=True)  # noqa: T201
    for name in [n for n in silent if n not in down]:
        label, _ = SERVICES[name]
        print(f"{label} ({name}) answers again, after {now - silent.pop(name):.1f} s", flush=True)  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="HAProxy's port (0: a free one)")
    parser.add_argument("--node-ports", default="8081,8082", help="nodes a,b (0,0: free ones)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per node")
    parser.add_argument("--workdir", type=Path, default=ROOT / "instance" / "cluster")
    args = parser.parse_args(argv)
    node_ports = tuple(int(p) for p in args.node_ports.split(","))
    settings = dict(os.environ)
    cluster = Cluster(
        args.workdir,
        port=args.port,
        node_ports=(node_ports[0], node_ports[1]),
        workers=args.workers,
        settings=settings,
        database_url=settings.get("DATABASE_URL") or None,
        redis_url=settings.get("REDIS_URL") or None,
    )

    def terminate(signum, frame):
        raise KeyboardInterrupt

    # SIGHUP asks for what ``restart nodes`` does (a list: appending is safe in a handler).
    asked: list[str] = []
    signal.signal(signal.SIGHUP, lambda signum, frame: asked.append("restart nodes"))

    # Both, explicitly: a process started in the background may inherit SIGINT ignored.
    signal.signal(signal.SIGINT, terminate)
    signal.signal(signal.SIGTERM, terminate)
    code = 0
    try:
        print("starting: PostgreSQL, Redis, SeaweedFS, migrations, two nodes, HAProxy…", flush=True)  # noqa: T201
        cluster.start()
        providers = cluster._run_once(cluster._env["a"], "providers")
        print(describe(cluster, providers), flush=True)  # noqa: T201
        reported: set[str] = set()
        silent: dict[str, float] = {}  # service -> since when it does not answer
        commands = _read_commands()
        while True:
            time.sleep(0.5)
            if cluster._haproxy is not None and cluster._haproxy.poll() is not None:
                raise ClusterError(f"HAProxy exited; see {cluster.workdir / 'haproxy.log'}")
            for node in cluster.nodes.values():
                if not node.alive and node.name not in reported:
                    reported.add(node.name)
                    print(  # noqa: T201
                        f"node {node.name} exited ({node.proc.returncode if node.proc else '?'});"
                        " HAProxy sends its traffic to the other node",
                        flush=True,
                    )
            _report_services(cluster, silent)
            while asked or not commands.empty():
                line = asked.pop(0) if asked else commands.get()
                _run_command(cluster, line)
                if line.endswith(" nodes"):
                    reported.clear()  # a node that dies again is reported again
    except KeyboardInterrupt:
        pass
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)  # noqa: T201
        code = 1
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr
        if isinstance(stderr, bytes):
            stderr = stderr.decode(errors="replace")
        command = " ".join(map(str, exc.cmd))
        print(f"error: {command} failed:\n{stderr}", file=sys.stderr, flush=True)  # noqa: T201
        code = 1
    finally:
        # A second Ctrl-C must not cut the shutdown short (it is bounded: NODE_STOP_SECONDS).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping…", flush=True)  # noqa: T201
        cluster.stop()
        print("stopped.", flush=True)  # noqa: T201
    return code


if __name__ == "__main__":
    sys.exit(main())
