"""``/metrics`` (app/metrics.py) and traces (app/tracing.py), read the way operators read them.

Metrics are scraped over real HTTP after real chat traffic through the fake provider: the app on
a loopback server in this process (its values live in this process, so each test compares a
scrape after with one before), and gunicorn with two workers in multi-process mode, where any
worker's answer must add up both. Spans are read from an in-memory exporter handed to the app.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import make_project, make_user, wait_extracted
from tests.sse import parse_sse
from tools.fake_provider import Scenario
from tools.servers import gunicorn, migrate, new_project, provider_env, register

TOKEN = "metrics-token-for-the-tests-0123456789-abcdefghij"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}
CHAT_ROUTE = "/api/projects/<int:project_id>/chat"


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample of one scrape: ``(name, sorted labels) -> value``."""
    r = httpx.get(f"{base}/metrics", headers=SCRAPER, trust_env=False, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before, after, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def chat(base: str, token: str, project_id: int, message: str, **headers) -> list:
    r = httpx.post(
        f"{base}/api/projects/{project_id}/chat",
        json={"message": message, "stream": True},
        headers={"Authorization": f"Bearer {token}", **headers},
        trust_env=False,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return parse_sse(r.text)[0]


@pytest.fixture
def config_overrides(request):
    """Every app here has a metrics token; ``use_fake`` works as in the rest of the suite."""
    marker = request.node.get_closest_marker("use_fake")
    fake = request.getfixturevalue("fake").app_config(**marker.kwargs) if marker else {}
    return {"METRICS_TOKEN": TOKEN, **fake}


# --- one process: the app on a loopback server ---------------------------------------------


@pytest.mark.use_fake(LLM_RETRY_MAX_WAIT_SECONDS=0.2)
def test_chat_traffic_with_a_fallback_moves_the_counters_by_route_and_outcome(
    app, live_server, fake
):
    user = make_user(app)
    project = make_project(app, user)
    before = scrape(live_server)

    fake.script("responses", Scenario(status=503), Scenario(status=503))  # retry, then fallback
    fell_back = chat(live_server, user.token, project, "Are you there?")
    answered = chat(live_server, user.token, project, "And now?")
    after = scrape(live_server)

    assert fell_back[-1][1]["message"]["provider"] == "openrouter"
    assert answered[-1][1]["message"]["provider"] == "openai"
    chat_ok = {"method": "POST", "route": CHAT_ROUTE}
    assert moved(before, after, "prompthub_http_requests_total", **chat_ok, status="200") == 2
    assert moved(before, after, "prompthub_http_request_duration_seconds_count", **chat_ok) == 2
    assert moved(before, after, "prompthub_turns_started_total") == 2
    assert moved(before, after, "prompthub_turns_finished_total", outcome="complete") == 2
    for provider in ("openai", "openrouter"):
        ttft = "prompthub_turn_first_token_seconds_count"
        assert moved(before, after, ttft, provider=provider) == 1, provider
    unavailable = {"provider": "openai", "kind": "unavailable"}
    assert moved(before, after, "prompthub_provider_errors_total", **unavailable) == 2
    assert moved(before, after, "prompthub_provider_fallbacks_total", **unavailable) == 1
    assert moved(before, after, "prompthub_turn_duration_seconds_count", outcome="complete") == 2
    # Routes are URL rules: no raw path (with its ids) ever becomes a label.
    routes = {dict(labels).get("route") for _, labels in after}
    assert f"/api/projects/{project}/chat" not in routes
    missing = httpx.get(f"{live_server}/no/such/page/42", trust_env=False)
    assert missing.status_code == 404
    assert value(scrape(live_server), "prompthub_http_requests_total", method="GET",
                 route="<unmatched>", status="404") >= 1  # fmt: skip


@pytest.mark.use_fake()
def test_live_turns_and_open_readers_are_gauges_and_stop_counts_as_stopped(app, live_server, fake):
    user = make_user(app)
    project = make_project(app, user)
    auth = {"Authorization": f"Bearer {user.token}"}
    fake.script("responses", Scenario(deltas=["word "] * 1000, token_delay_ms=20))  # until Stop
    before = scrape(live_server)
    started = threading.Event()
    turn: dict = {}

    def start_and_read():
        with httpx.stream(
            "POST",
            f"{live_server}/api/projects/{project}/chat",
            json={"message": "Take your time", "stream": True},
            headers=auth,
            trust_env=False,
            timeout=30,
        ) as r:
            received = ""
            for chunk in r.iter_text():
                received += chunk
                if "event: start" in received and "id" not in turn:
                    data = received.split("event: start\ndata: ")[1].split("\n")[0]
                    turn["id"] = json.loads(data)["turn_id"]
                    started.set()

    writer = threading.Thread(target=start_and_read, daemon=True)
    writer.start()
    assert started.wait(10)
    with httpx.stream(
        "GET",
        f"{live_server}/api/turns/{turn['id']}/events",
        headers=auth,
        trust_env=False,
        timeout=30,
    ) as reader:
        texts = reader.iter_text()
        next(texts)  # the start event: this reader is attached
        during = scrape(live_server)
        stop = httpx.post(f"{live_server}/api/turns/{turn['id']}/stop", headers=auth,
                          trust_env=False)  # fmt: skip
        assert stop.status_code in (200, 202), stop.text
        for _ in texts:  # to the terminal event
            pass
    writer.join(10)
    after = scrape(live_server)

    assert value(during, "prompthub_turns_live") - value(before, "prompthub_turns_live") == 1
    assert moved(before, during, "prompthub_turn_readers_open") == 1
    assert value(after, "prompthub_turns_live") == value(before, "prompthub_turns_live")
    assert value(after, "prompthub_turn_readers_open") == value(
        before, "prompthub_turn_readers_open"
    )
    assert moved(before, after, "prompthub_turns_finished_total", outcome="stopped") == 1
    assert ("prompthub_extraction_queue_waiting", ()) in after
    assert value(after, "prompthub_reply_spool_files") == 0


@pytest.mark.use_fake(  # (the fake is not called: this module's settings go through the marker)
    EXTRACT_WORKERS=2, EXTRACT_PER_USER=1, EXTRACT_CPU_SECONDS=1, EXTRACT_WALL_SECONDS=20.0
)
def test_the_extraction_queue_depth_is_a_gauge(app, client):
    from tests.filehelp import upload
    from tools.pdfs import bomb_pdf

    def depth() -> tuple[float, float]:
        samples = {
            s.name: s.value
            for family in text_string_to_metric_families(
                client.get("/metrics", headers=SCRAPER).get_data(as_text=True)
            )
            for s in family.samples
        }
        return samples["prompthub_extraction_queue_waiting"], samples[
            "prompthub_extraction_running"
        ]

    user = make_user(app)
    project = make_project(app, user)
    ids = []
    for n in range(2):  # one user's share is one child: the second waits for the first
        r = upload(client, user, project, f"heavy{n}.pdf", bomb_pdf(pages=20 + n))
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    seen = set()
    for _ in range(50):  # the first run's thread may still be starting
        seen.add(depth())
        if (1, 1) in seen:
            break
    assert (1, 1) in seen, seen  # the first file runs (a bomb: ~1 s of CPU), the second waits
    for file_id in ids:
        wait_extracted(client, user.headers, project, file_id)
    for _ in range(100):  # the gauges follow the run's end (its thread reports after storing)
        if depth() == (0, 0):
            break
        threading.Event().wait(0.05)
    assert depth() == (0, 0)


# --- who may scrape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
    ids=["none", "wrong", "basic-scheme", "longer", "empty"],
)
def test_metrics_without_the_token_are_refused(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"prompthub_" not in r.data


def test_a_users_api_token_or_login_does_not_open_metrics(app, client, auth):
    user_token = {"Authorization": f"Bearer {make_user(app).token}"}
    assert client.get("/api/projects", headers=user_token).status_code == 200  # a good token
    assert client.get("/metrics", headers=user_token).status_code == 401
    auth.register()
    assert client.get("/").status_code == 200  # logged in: the projects page
    assert client.get("/metrics").status_code == 401


def test_metrics_with_the_token_need_no_session_and_set_no_cookie(client):
    r = client.get("/metrics", headers=SCRAPER)
    assert r.status_code == 200
    assert "Set-Cookie" not in r.headers
    assert b"# TYPE prompthub_http_requests_total counter" in r.data


def test_metrics_are_absent_without_a_token(database_url):
    from app import create_app
    from tests.conftest import base_config

    off = create_app(base_config(database_url))
    assert off.config["METRICS_TOKEN"] is None
    assert off.test_client().get("/metrics", headers=SCRAPER).status_code == 404


def test_metrics_answer_while_the_database_is_unreachable():
    """An outage is when operators look: /metrics reads no table."""
    from app import create_app
    from tests.conftest import base_config

    down = create_app(
        base_config("postgresql://postgres@127.0.0.1:1/nowhere", METRICS_TOKEN=TOKEN)
    ).test_client()
    assert down.get("/readyz").status_code == 503
    r = down.get("/metrics", headers=SCRAPER)
    assert r.status_code == 200
    assert b'prompthub_http_requests_total{method="GET",route="/readyz",status="503"}' in r.data


def test_production_refuses_a_weak_metrics_token(tmp_path):
    from app.config import ConfigError, load_config

    env = {"APP_ENV": "production", "SECRET_KEY": "Zq8-vW3rT1xYp0LmN7bK4sJ2hG9fD6aE5cU"}
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        load_config(tmp_path, env={**env, "METRICS_TOKEN": "metrics"})
    assert load_config(tmp_path, env={**env, "METRICS_TOKEN": TOKEN})["METRICS_TOKEN"] == TOKEN


# --- gunicorn: two workers, one sum ---------------------------------------------------------


@pytest.mark.server
def test_gunicorn_workers_add_up_and_a_dead_worker_leaves_the_gauges(
    fake, tmp_path, server_database
):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")
    env = provider_env(
        fake,
        tmp_path,
        server_database,
        WEB_CONCURRENCY="2",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    migrate(env)
    fake.reset()
    with gunicorn(env, tmp_path) as server:
        assert not (metrics_dir / "counter_1.db").exists()  # emptied at start
        token = register(server.base, "metrics@example.com")
        project = new_project(server.base, token)
        chats = 6
        threads = [
            threading.Thread(target=chat, args=(server.base, token, project, f"Hello {n}"))
            for n in range(chats)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        pids = set(server.workers())
        assert len(pids) == 2
        served = {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("counter_*.db")}
        assert served <= pids and served, served

        # Whichever worker answers, it answers for both.
        for _ in range(4):
            samples = scrape(server.base)
            assert value(samples, "prompthub_turns_finished_total", outcome="complete") == chats
            assert value(samples, "prompthub_http_requests_total", method="POST",
                         route=CHAT_ROUTE, status="200") == chats  # fmt: skip
            assert value(samples, "prompthub_turn_first_token_seconds_count",
                         provider="openai") == chats  # fmt: skip

        def live_gauge_pids() -> set[int]:
            return {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("gauge_livesum_*")}

        assert live_gauge_pids() == pids  # each worker has its share of the live gauges
        killed = server.kill_workers()
        server.wait_ready()  # a new worker answers: the master has reaped the dead ones
        assert not live_gauge_pids() & set(killed)  # child_exit dropped their shares
        samples = scrape(server.base)
        assert value(samples, "prompthub_turns_finished_total", outcome="complete") == chats
        assert value(samples, "prompthub_turns_live") == 0


# --- traces --------------------------------------------------------------------------------


@pytest.fixture
def spans():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


def test_tracing_is_off_unless_configured(app):
    assert "tracer_provider" not in app.extensions
    assert not hasattr(app, "_original_wsgi_app")  # no OpenTelemetry middleware


@pytest.mark.parametrize(
    ("settings", "endpoint"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"}, "http://otel:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/x"}, "http://t:4318/x"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_SDK_DISABLED": "true"}, None),
    ],
)
def test_the_standard_otel_variables_turn_tracing_on(tmp_path, settings, endpoint):
    from app.config import load_config
    from app.tracing import traces_endpoint

    assert traces_endpoint(load_config(tmp_path, env=settings)) == endpoint


def test_a_chat_request_span_has_the_request_id_and_sql_and_provider_children(
    database_url, tmp_path, fake, spans
):
    from opentelemetry.trace import SpanKind

    from app import create_app, tracing
    from tests.conftest import base_config
    from tools.servers import in_thread

    fake.reset()
    app = create_app(
        base_config(
            database_url,
            UPLOAD_DIR=str(tmp_path / "uploads"),
            TRACING_SPAN_EXPORTER=spans,
            **fake.app_config(),
        )
    )
    try:
        with app.app_context():
            from app.extensions import db

            db.create_all()
        user = make_user(app)
        project = make_project(app, user)
        spans.clear()
        with in_thread(app) as base:
            events = chat(base, user.token, project, "Trace me", **{"X-Request-ID": "trace-42"})
            assert events[-1][0] == "done"
            # The request span ends when its stream has been sent; wait for it (event-based).
            request_span = None
            for _ in range(200):
                found = [
                    s
                    for s in spans.get_finished_spans()
                    if s.attributes.get("prompthub.request_id") == "trace-42"
                ]
                if found:
                    request_span = found[0]
                    break
                threading.Event().wait(0.05)
        assert request_span is not None, [s.name for s in spans.get_finished_spans()]
        assert request_span.kind is SpanKind.SERVER
        assert request_span.name == f"POST {CHAT_ROUTE}"
        trace_spans = [
            s
            for s in spans.get_finished_spans()
            if s.context.trace_id == request_span.context.trace_id
        ]
        parent = request_span.context.span_id
        children = [s for s in trace_spans if s.parent and s.parent.span_id == parent]
        sql = [s for s in children if s.attributes.get("db.system") == "sqlite" or
               s.attributes.get("db.system") == "postgresql"]  # fmt: skip
        provider = [s for s in children if s.kind is SpanKind.CLIENT and s not in sql]
        assert sql, [s.name for s in children]
        assert len(provider) == 1, [(s.name, dict(s.attributes)) for s in children]
        url = provider[0].attributes.get("url.full") or provider[0].attributes.get("http.url")
        assert url == f"{fake.openai_base_url}/responses"
    finally:
        tracing.shutdown(app)
        from app.llm import close_client

        close_client(app)
        app.extensions["broker"].shutdown()
        app.extensions["token_users"].shutdown()
        with app.app_context():
            from app.extensions import db

            db.session.remove()
            db.engine.dispose()


def test_metrics_dir_is_per_node_by_default():
    namespace: dict = {}
    source = (Path(__file__).parents[1] / "gunicorn.conf.py").read_text()
    exec(source, namespace)  # noqa: S102 (our own config file)
    assert namespace["_METRICS_DIR"].endswith(namespace["bind"].replace(":", "-"))
    assert callable(namespace["child_exit"]) and callable(namespace["on_starting"])
