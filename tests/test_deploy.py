"""The deploy manifests (docs/deploy.md): the ``Procfile`` runs here under honcho exactly as a
Procfile host would run it (release, then web on ``$PORT``), and ``render.yaml`` says the same
commands and names only settings the app reads, with values its production checks accept.
Render itself cannot be reached from here; what it would do with the Blueprint is not tested."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import time

import httpx
import pytest
import yaml

from app import settings_doc
from app.config import load_config
from app.settings import Settings
from tools.pdfs import text_pdf
from tools.servers import BIN, ROOT, _wait_ready, free_port, new_project, register, server_env


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def blueprint() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text())


def web_service() -> dict:
    [web] = [s for s in blueprint()["services"] if s["type"] == "web"]
    return web


def settings_the_app_reads() -> set[str]:
    return set(Settings.model_fields)


def honcho(*args: str) -> list[str]:
    # An empty env file: honcho would otherwise read a developer's .env into the processes.
    return [str(BIN / "honcho"), "--no-colour", "-f", str(ROOT / "Procfile"), *args]


@pytest.mark.server
def test_the_procfile_releases_then_serves_under_honcho(server_database, tmp_path):
    """``release`` migrates an empty database and exits 0; ``web`` serves on the port honcho
    gives it, healthy and ready, ``worker`` extracts an uploaded PDF (the web process runs no
    jobs: production's default), and both stop when honcho is told to."""
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    port = free_port()
    env = server_env(
        server_database,
        port,
        JWT_SECRET=secrets.token_urlsafe(32),
        CORS_ORIGINS="https://app.example.com",
        UPLOAD_DIR=str(tmp_path / "uploads"),
        REPLY_SPOOL_DIR=str(tmp_path / "spool"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}",
    )
    for name in (
        "PORT",
        "FLASK_APP",
        "QUEUE_IN_PROCESS",
    ):  # honcho gives the port; the Procfile names the app
        env.pop(name)
    started = time.monotonic()
    release = subprocess.run(
        honcho("-e", str(empty_env), "start", "release"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert release.returncode == 0, release.stdout + release.stderr
    assert "Running upgrade" in release.stdout

    log_path = tmp_path / "honcho.log"
    with log_path.open("wb") as log:
        web = subprocess.Popen(
            honcho("-e", str(empty_env), "start", "-p", str(port), "web", "worker"),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so nothing can outlive the test
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base + "/healthz", web, log_path, timeout=30)
            ready = httpx.get(base + "/readyz", trust_env=False)
            assert ready.json() == {
                "status": "ok",
                "checks": {"database": "ok", "schema": "ok", "storage": "ok"},
            }
            node = httpx.get(base + "/readyz/node", trust_env=False)
            assert node.json() == {"status": "ok", "checks": {"schema": "ok"}}
            preflight = httpx.options(
                base + "/api/projects",
                headers={
                    "Origin": "https://app.example.com",
                    "Access-Control-Request-Method": "POST",
                },
                trust_env=False,
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
            token = register(base, "procfile@example.com")
            files = f"{base}/api/projects/{new_project(base, token)}/files"
            auth = {"Authorization": f"Bearer {token}"}
            r = httpx.post(files, files={"file": ("a.pdf", text_pdf("hi"))}, headers=auth)
            assert r.status_code == 201 and r.json()["text"]["status"] == "pending", r.text
            deadline = time.monotonic() + 30
            while httpx.get(f"{files}/{r.json()['id']}", headers=auth).json()["text"] != {
                "status": "ok", "chars": 2, "pages": 1, "note": None
            }:  # fmt: skip
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.1)
            web.send_signal(signal.SIGTERM)
            web.wait(timeout=30)
        finally:
            if web.poll() is None:
                os.killpg(web.pid, signal.SIGKILL)
                web.wait(timeout=10)
    served = log_path.read_text(errors="replace")
    assert "web.1 stopped" in served and "worker.1 stopped" in served
    assert "Shutting down: Master" in served  # gunicorn itself was stopped, not orphaned
    with pytest.raises(httpx.ConnectError):  # nothing answers on the port any more
        httpx.get(base + "/healthz", timeout=1, trust_env=False)
    assert time.monotonic() - started < 60


def test_render_runs_the_procfile_commands():
    web, processes = web_service(), procfile()
    assert set(processes) == {"release", "web", "worker"}
    # No worker service: a Render disk belongs to one service, so the web service runs the
    # jobs itself, from an SQLite queue on its disk (docs/deploy.md "The worker").
    variables = {var["key"]: var.get("value") for var in web_service()["envVars"]}
    assert variables["QUEUE_IN_PROCESS"] == "true"
    assert variables["QUEUE_URL"].startswith("sqlite:////var/data/")
    assert web["startCommand"] == processes["web"]
    assert web["preDeployCommand"] == processes["release"]
    assert "pip install" in web["buildCommand"]
    assert web["runtime"] == "python"


def test_render_checks_a_route_the_app_serves(client):
    path = web_service()["healthCheckPath"]
    assert client.get(path).status_code == 200


def test_render_names_only_settings_the_app_reads():
    known = settings_the_app_reads()
    named = {var["key"] for var in web_service()["envVars"]}
    assert named - known == set()
    # The settings the deploy needs are there, set the way docs/deploy.md says.
    variables = {var["key"]: var for var in web_service()["envVars"]}
    assert variables["APP_ENV"]["value"] == "production"
    assert variables["SECRET_KEY"]["generateValue"] is True
    assert variables["JWT_SECRET"]["generateValue"] is True
    assert variables["OPENAI_API_KEY"]["sync"] is False
    assert variables["OPENROUTER_API_KEY"]["sync"] is False
    database = variables["DATABASE_URL"]["fromDatabase"]
    assert database["property"] == "connectionString"
    assert database["name"] in {db["name"] for db in blueprint()["databases"]}


def test_render_values_pass_the_production_checks(tmp_path):
    """What the app would see on Render: literal values as given, a random 256-bit value
    (base64, as Render generates) for each ``generateValue``, a connection string for the
    database, and nothing yet for the ``sync: false`` secrets."""
    env: dict[str, str] = {}
    for var in web_service()["envVars"]:
        if "value" in var:
            env[var["key"]] = str(var["value"])
        elif var.get("generateValue"):
            env[var["key"]] = base64.b64encode(secrets.token_bytes(32)).decode()
        elif "fromDatabase" in var:
            env[var["key"]] = "postgresql://prompthub:pw@dpg-example-a/prompthub"
    cfg = load_config(tmp_path, env=env)
    assert cfg["APP_ENV"] == "production"
    assert cfg["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert cfg["JWT_SECRET"] != cfg["SECRET_KEY"]
    assert cfg["TRUST_PROXY"] is True
    mount = web_service()["disk"]["mountPath"]
    for key in ("UPLOAD_DIR", "REPLY_SPOOL_DIR"):
        assert cfg[key].startswith(mount + "/"), key


def test_env_example_and_the_readme_table_are_generated_from_the_settings():
    """Both list every setting with its default and description, from ``app/settings.py``."""
    assert (ROOT / ".env.example").read_text() == settings_doc.render_env_example(), (
        ".env.example is stale: make settings-doc"
    )
    readme = (ROOT / "README.md").read_text()
    assert settings_doc.current_table(readme) == settings_doc.render_table(), (
        "README's settings table is stale: make settings-doc"
    )


def test_env_example_sets_every_setting_and_only_those():
    example = [
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]
    assert example == list(Settings.model_fields)
