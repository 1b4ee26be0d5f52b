"""Upload and download throughput of one 20 MB file through the app, on the local store and on
S3 (SeaweedFS on loopback, ``tools/seaweed.py``), with gunicorn as production runs it (gevent,
two workers, ``gunicorn.conf.py``) on PostgreSQL. docs/benchmarks.md, section "File storage".

    python -m tests.bench.storage --repeats 5 --out /tmp/prompthub-bench/results/storage.json

Per backend, ``--repeats`` times: a new random file (so the duplicate check never short-cuts)
is uploaded with ``POST /api/projects/<id>/files`` (one multipart body, sent from memory) and
downloaded with ``GET …/download`` (read as it streams, hashed). MB/s is 10^6 bytes per second of
wall time, client side, median and range. Also recorded: the same bytes straight to and from
SeaweedFS with boto3 (what the store itself gives on this machine), and each worker's peak RSS
(``VmHWM``) before and after, which shows whether a download held the file in memory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.filehelp import multipart
from tools.bench.harness import ServerConfig, Stack, emit, machine, make_account
from tools.seaweed import SeaweedFS

BUCKET = "prompthub-bench"
MB = 1_000_000


def peak_rss_mb(stack: Stack) -> list[float]:
    peaks = []
    for proc in stack.workers:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peaks.append(int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024)
    return [round(p, 1) for p in peaks]


def rates(sizes_and_seconds: list[tuple[int, float]]) -> dict[str, float]:
    values = [size / seconds / MB for size, seconds in sizes_and_seconds]
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def through_the_app(stack: Stack, size: int, repeats: int) -> dict[str, Any]:
    account = make_account(stack.url, f"files-{uuid.uuid4().hex[:8]}@example.com")
    base = f"/api/projects/{account.project_id}/files"
    uploads, downloads = [], []
    rss_before = peak_rss_mb(stack)
    with httpx.Client(base_url=stack.url, trust_env=False, timeout=120) as client:
        for i in range(repeats):
            content = os.urandom(size)
            body, content_type = multipart(f"bench-{i}.bin", content)
            started = time.perf_counter()
            r = client.post(
                base, content=body, headers={**account.bearer, "Content-Type": content_type}
            )
            uploads.append((size, time.perf_counter() - started))
            assert r.status_code == 201, r.text
            file_id = r.json()["id"]
            digest = hashlib.sha256()
            started = time.perf_counter()
            with client.stream("GET", f"{base}/{file_id}/download", headers=account.bearer) as d:
                assert d.status_code == 200
                for chunk in d.iter_raw(256 * 1024):
                    digest.update(chunk)
            downloads.append((size, time.perf_counter() - started))
            assert digest.hexdigest() == hashlib.sha256(content).hexdigest()
    return {
        "upload_mb_s": rates(uploads),
        "download_mb_s": rates(downloads),
        "upload_s": [round(s, 3) for _, s in uploads],
        "download_s": [round(s, 3) for _, s in downloads],
        "worker_peak_rss_mb_before": rss_before,
        "worker_peak_rss_mb_after": peak_rss_mb(stack),
    }


def straight_to_seaweed(s3: SeaweedFS, size: int, repeats: int, folder: Path) -> dict[str, Any]:
    """The floor: the same file with boto3's managed transfer, no app in between."""
    from boto3.s3.transfer import TransferConfig

    client = s3.client()
    config = TransferConfig(
        multipart_threshold=8 * 2**20, multipart_chunksize=8 * 2**20, max_concurrency=2
    )  # fmt: skip  (what the app uses)
    path = folder / "direct.bin"
    uploads, downloads = [], []
    for i in range(repeats):
        path.write_bytes(os.urandom(size))
        started = time.perf_counter()
        client.upload_file(str(path), BUCKET, f"direct/{i}", Config=config)
        uploads.append((size, time.perf_counter() - started))
        started = time.perf_counter()
        body = client.get_object(Bucket=BUCKET, Key=f"direct/{i}")["Body"]
        for _chunk in body.iter_chunks(256 * 1024):
            pass
        downloads.append((size, time.perf_counter() - started))
    return {"upload_mb_s": rates(uploads), "download_mb_s": rates(downloads)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size-mb", type=float, default=20.0, help="10^6 bytes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    size = int(args.size_mb * MB)
    server = ServerConfig("gevent", 2)
    report: dict[str, Any] = {
        "machine": machine(),
        "what": "storage",
        "server": {"label": server.label},
        "file_bytes": size,
        "repeats": args.repeats,
    }
    common = {"UPLOAD_ALLOWED_EXTENSIONS": "builtin,.bin", "MAX_UPLOAD_MB": "20"}
    with tempfile.TemporaryDirectory(prefix="prompthub-bench-s3-") as tmp:
        folder = Path(tmp)
        with SeaweedFS(folder / "seaweed").start() as s3:
            s3.make_bucket(BUCKET)
            for backend in ("local", "s3"):
                extra = dict(common)
                if backend == "s3":
                    extra |= s3.settings(BUCKET, "app") | {
                        "STORAGE_STAGING_DIR": str(folder / "staging")
                    }
                with Stack(server=server, workdir=folder / backend, extra_env=extra) as stack:
                    report[backend] = through_the_app(stack, size, args.repeats)
            report["seaweed_direct"] = straight_to_seaweed(s3, size, args.repeats, folder)
    return emit(report, args.out)


if __name__ == "__main__":
    main()
