"""``make run``, as it runs (issue 26, finding 8): the command line is taken from the Makefile
(``make -n``: printed, not run) and started as it is; Werkzeug's interactive debugger
(``/console``, a Python console behind a PIN) is off unless asked for, and asking for it with a
host other than loopback stops ``make`` before anything runs."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

import httpx
import pytest

from tools.servers import BIN, ROOT, free_port


def make_run(**variables: str) -> subprocess.CompletedProcess:
    """``make -n run`` with these variables and this interpreter's virtualenv."""
    args = [f"{key}={value}" for key, value in {"VENV": str(BIN.parent), **variables}.items()]
    return subprocess.run(
        ["make", "--no-print-directory", "-n", "run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def server_command(**variables: str) -> list[str]:
    """The line of ``make run`` that starts the development server."""
    done = make_run(**variables)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if " run --host " in line]
    assert len(lines) == 1, done.stdout
    return shlex.split(lines[0])


def console_status(command: list[str], tmp_path) -> int:
    """Start ``command`` (the development server with its reloader) and ask for ``/console``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "TEST_"))},
        "FLASK_APP": "app",
        "APP_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.db'}",
        "MAINTENANCE_SECONDS": "0",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    base = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the reloader's child too: the group is stopped below
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", trust_env=False, timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "the development server exited"
                assert time.monotonic() < deadline, "the development server never answered"
                time.sleep(0.1)
        return httpx.get(f"{base}/console", trust_env=False, timeout=5).status_code
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.mark.server
@pytest.mark.parametrize(
    ("variables", "status"),
    [
        pytest.param({}, 404, id="default-no-debugger"),
        # The probe is real: asked for, on loopback, the console answers.
        pytest.param({"DEBUGGER": "1"}, 200, id="debugger-asked-for"),
    ],
)
def test_make_run_serves_the_debugger_console_only_when_asked(tmp_path, variables, status):
    command = server_command(HOST="127.0.0.1", PORT=str(free_port()), **variables)
    assert console_status(command, tmp_path) == status


def test_make_run_on_another_host_has_no_debugger():
    command = server_command(HOST="0.0.0.0")  # noqa: S104 (printed, not run)
    assert "--no-debugger" in command
    assert "--debugger" not in command


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])  # noqa: S104
def test_make_run_refuses_the_debugger_on_a_host_other_than_loopback(host):
    done = make_run(DEBUGGER="1", HOST=host)
    assert done.returncode != 0
    assert f"DEBUGGER=1 serves a Python console to anyone who reaches HOST={host}" in done.stderr
    assert "flask run" not in done.stdout  # nothing was run (nor would be)


def test_make_run_installs_what_running_needs_and_make_test_adds_the_dev_extra(tmp_path):
    # A fresh clone (no virtualenv yet): `make run` must not pull pytest, Playwright,
    # schemathesis and the SeaweedFS binary into a server's environment.
    def installs(target: str) -> list[str]:
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", target, f"VENV={tmp_path / 'venv'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if " -e " in line]

    assert [line.endswith(" -e .") for line in installs("run")] == [True]
    assert any(line.endswith("'.[dev]'") for line in installs("test-fast"))
