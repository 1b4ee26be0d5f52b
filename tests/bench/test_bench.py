"""``make bench``: every benchmark of docs/benchmarks.md, as on-demand tests.

They assert what must hold however busy the machine is (no errors, no lost or extra rows) and
print the figures; the targets and their discussion live in docs/benchmarks.md. Each writes its
JSON report under ``BENCH_OUT`` (default ``/tmp/prompthub-bench/results``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

OUT = Path(os.environ.get("BENCH_OUT", "/tmp/prompthub-bench/results"))


def test_fake_provider_holds_200_streams_without_becoming_the_bottleneck():
    from tools.bench.harness import main

    report = main(
        ["fake", "--levels", "1,50,200", "--duration", "6", "--out", str(OUT / "fake.json")]
    )
    at_200 = report["fake"]["async"][-1]
    assert at_200["errors"] == 0
    assert at_200["ttft_ms_median"] < 300  # 200 ms scripted


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_streams_through_the_platform_and_direct(worker_class):
    from tools.bench.harness import main

    out = OUT / f"streams-{worker_class}.json"
    report = main(
        ["streams", "--worker-class", worker_class, "--threads", "128", "--out", str(out)]
    )
    for row in report["streams"]:
        assert row["direct"]["errors"] == 0, row
        assert row["platform"]["errors"] == 0, row


def test_two_nodes_behind_haproxy_and_one_node_direct():
    from tools.bench.harness import main

    out = OUT / "cluster.json"
    report = main(["cluster", "--workers", "2", "--levels", "1,50", "--out", str(out)])
    for row in report["cluster"]["levels"]:
        assert row["one_node_direct"]["errors"] == 0, row
        assert row["two_nodes_haproxy"]["errors"] == 0, row


def test_endpoints_history_memory_and_start_time():
    from tools.bench.harness import main

    report = main(["endpoints", "--duration", "5", "--out", str(OUT / "endpoints.json")])
    for rates in (report["endpoints"]["rps_c1"], report["endpoints"]["rps_c16"]):
        assert rates["api_projects"]["non_200"] == 0
        assert rates["bare"]["non_200"] == 0


def test_load_50_users_for_60_seconds_loses_nothing():
    from tools.bench.loadtest import main

    report = main(["--users", "50", "--duration", "60", "--out", str(OUT / "load.json")])
    assert report["server_errors_5xx"] == 0
    assert not report["transport_errors"]
    assert not any(report["lost"].values())
    assert not any(report["unacknowledged_rows"].values())


def test_chat_keeps_answering_while_ten_pdf_bombs_are_extracted():
    from tools.bench.harness import main

    out = OUT / "bombs.json"
    report = main(["bombs", "--worker-class", "gevent", "--levels", "1,10", "--duration", "6",
                   "--out", str(out)])  # fmt: skip
    assert [u["answer"] for u in report["bombs"]["uploads"]] == [201] * 10
    for row in report["bombs"]["quiet"] + report["bombs"]["bombs"]:
        assert row["errors"] == 0, row


def test_metrics_with_100k_replies_read_the_covering_index():
    from tests.bench.metrics import main

    report = main(["--out", str(OUT / "metrics.json")])
    for run in report["runs"]:
        assert run["messages_in_table"] == 400_000  # two projects: 100k replies + 100k asks each
        for window, found in run["statements"].items():
            assert found["plans"], window
            for plan in found["plans"]:
                assert any("ix_messages_version_created" in line for line in plan["plan"]), plan


def test_a_20_mb_file_up_and_down_on_the_local_store_and_on_s3():
    from tests.bench.storage import main

    report = main(["--repeats", "5", "--out", str(OUT / "storage.json")])
    for backend in ("local", "s3"):
        assert report[backend]["upload_mb_s"]["min"] > 0
        assert report[backend]["download_mb_s"]["min"] > 0
