"""Per-version metrics (``app/prompts/metrics.py``): exact figures from seeded replies on SQLite
and PostgreSQL, the windows and their buckets, the API, the page, and the SVG charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.catalog import ModelChoice
from app.extensions import db
from app.models import Project, User
from app.prompts import charts
from app.prompts import services as prompt_services
from app.prompts.metrics import (
    DAY,
    EMPTY,
    HOUR,
    WEEK,
    Tally,
    bucket_index,
    bucket_seconds,
    bucket_start,
    figures,
    series_of,
    version_metrics,
)
from tests.factories import make_project, make_user
from tests.traffic import add_conversation, add_rows, reply, version_id

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)  # a Tuesday
MODELS = [
    {"name": "cheap", "openai": "cheap-1", "openrouter": None,
     "input_per_million": 1.0, "output_per_million": 2.0},
    {"name": "dear", "openai": "dear-1", "openrouter": None,
     "input_per_million": 10.0, "output_per_million": 40.0},
    {"name": "unpriced", "openai": "unpriced-1", "openrouter": None,
     "input_per_million": None, "output_per_million": None},
]  # fmt: skip
CHEAP = ModelChoice(**MODELS[0])


@pytest.fixture
def config_overrides():
    return {"MODELS": MODELS}


# --- the pure core -----------------------------------------------------------------------------


def test_figures_turn_counts_into_rates_means_and_cost():
    tally = Tally(
        replies=8,
        thumbs_up=3,
        thumbs_down=1,
        failed=2,
        fallbacks=1,
        tokens_in=150,
        tokens_out=1500,
        with_tokens_in=5,
        with_tokens_out=5,
        median_ttft_ms=300.0,
    )
    result = figures(tally, CHEAP)
    assert (result.up_rate, result.error_rate, result.fallback_rate) == (0.75, 0.25, 0.125)
    assert (result.mean_tokens_in, result.mean_tokens_out) == (30, 300)
    assert result.cost_usd == pytest.approx(3150 / 1e6)
    assert result.median_ttft_ms == 300.0 and result.median_total_ms is None


def test_nothing_rated_or_no_replies_gives_no_rates_and_an_unpriced_model_no_cost():
    empty = figures(EMPTY, CHEAP)
    assert empty.replies == 0
    assert empty.up_rate is empty.error_rate is empty.mean_tokens_in is None
    assert empty.cost_usd == 0.0
    unpriced = ModelChoice(**MODELS[2])
    assert figures(Tally(replies=1, tokens_in=10), unpriced).cost_usd is None


def test_bucket_sizes_follow_the_window_and_the_span():
    assert bucket_seconds("24h", None, NOW) == HOUR
    assert bucket_seconds("7d", NOW - timedelta(days=400), NOW) == DAY
    assert bucket_seconds("all", NOW - timedelta(days=60), NOW) == DAY
    assert bucket_seconds("all", NOW - timedelta(days=61), NOW) == WEEK
    assert bucket_seconds("all", None, NOW) == DAY


def test_buckets_start_on_whole_hours_days_and_mondays():
    assert bucket_start(bucket_index(NOW, HOUR), HOUR) == datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert bucket_start(bucket_index(NOW, DAY), DAY) == datetime(2026, 3, 10, tzinfo=UTC)
    monday = bucket_start(bucket_index(NOW, WEEK), WEEK)
    assert monday == datetime(2026, 3, 9, tzinfo=UTC) and monday.weekday() == 0


def test_a_series_has_a_value_per_bucket_and_empty_buckets_have_no_rates():
    series = series_of({5: Tally(replies=2, failed=1)}, range(4, 7), CHEAP)
    assert series["replies"] == [0, 2, 0]
    assert series["error_rate"] == [None, 0.5, None]
    assert series["cost_usd"] == [0.0, 0.0, 0.0]


# --- seeded traffic ----------------------------------------------------------------------------


@pytest.fixture
def seeded(app):
    """v1 (cheap) old traffic, v2 (cheap) production, v3 (dear) candidate, v4 (unpriced)."""
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner, system_prompt="Version one.")
    with app.app_context():
        user = db.session.get(User, owner.id)
        for content, model, kw in (
            ("Version two.", "cheap", {"activate": True}),
            ("Version three.", "dear", {"activate": False, "candidate": True}),
            ("Version four.", "unpriced", {"activate": False}),
        ):
            prompt_services.create_version(
                user=user, project_id=project_id, content=content, model=model, **kw
            )
        v1, v2, v3, v4 = (version_id(project_id, n) for n in (1, 2, 3, 4))
        chat = add_conversation(project_id)
        pinned_same = add_conversation(project_id, version=3, model="dear")
        overridden = add_conversation(project_id, version=3, model="cheap")
        h = timedelta(hours=1)

        def done(at, ttft, total, tin, tout, **kw):
            return reply(chat, v2, NOW - at, ttft_ms=ttft, total_ms=total, tokens_in=tin,
                         tokens_out=tout, **kw)  # fmt: skip

        add_rows([
            # v2, the last 24 hours: 8 counted replies.
            done(1 * h, 100, 1000, 10, 100, rating=1),
            done(1 * h, 300, 3000, 20, 200, rating=1, fallback=True),
            done(2 * h, 200, 2000, 30, 300, rating=-1),
            done(2 * h, 500, 5000, 40, 400),
            done(3 * h, 400, 4000, 50, 500, rating=1, fallback=True),
            reply(chat, v2, NOW - 3 * h, status="error", total_ms=50),
            reply(chat, v2, NOW - 3 * h, status="interrupted", ttft_ms=5, total_ms=60),
            reply(chat, v2, NOW - 3 * h, status="incomplete", ttft_ms=1, total_ms=2),
            # Not counted: still streaming, or a user's message.
            reply(chat, v2, NOW - h, status="streaming", ttft_ms=9000, total_ms=9000),
            reply(chat, v2, NOW - h, role="user", rating=-1),
            # v2, 30 hours ago: in 7 d, not in 24 h.
            done(30 * h, 700, 7000, 60, 600),
            # v3 (candidate): an even count of complete replies, one conversation pinned to
            # its own model (counted) and one overriding it (not counted).
            *[reply(pinned_same if i % 2 else chat, v3, NOW - 4 * h, ttft_ms=ttft,
                    total_ms=total, tokens_in=1, tokens_out=2)
              for i, (ttft, total) in enumerate([(100, 10), (200, 20), (300, 30), (400, 1000)])],
            reply(overridden, v3, NOW - 4 * h, ttft_ms=1, total_ms=1, tokens_in=10**6),
            # v4 two days ago, v1 thirty days ago.
            reply(chat, v4, NOW - 48 * h, ttft_ms=80, total_ms=800, tokens_in=7, tokens_out=7),
            reply(chat, v1, NOW - 30 * 24 * h, ttft_ms=50, total_ms=500),
        ])  # fmt: skip
    return {"owner": owner, "project_id": project_id}


def metrics_at(app, project_id, window, now=NOW):
    with app.app_context():
        result = version_metrics(db.session.get(Project, project_id), window, now=now)
        return result, {row.version.version: row for row in result.versions}


def test_last_24_hours_exact_figures(app, seeded):
    result, rows = metrics_at(app, seeded["project_id"], "24h")
    assert [(r.version.version, r.is_active, r.is_candidate) for r in result.versions] == [
        (2, True, False),
        (3, False, True),
    ]
    v2 = rows[2].figures
    assert (v2.replies, v2.thumbs_up, v2.thumbs_down) == (8, 3, 1)
    assert (v2.up_rate, v2.error_rate, v2.fallback_rate) == (0.75, 0.25, 0.25)
    assert (v2.median_ttft_ms, v2.median_total_ms) == (300, 3000)  # odd count: the middle one
    assert (v2.mean_tokens_in, v2.mean_tokens_out) == (30, 300)
    assert v2.cost_usd == pytest.approx((150 * 1.0 + 1500 * 2.0) / 1e6)
    v3 = rows[3].figures
    assert (v3.replies, v3.up_rate, v3.error_rate, v3.fallback_rate) == (4, None, 0, 0)
    assert (v3.median_ttft_ms, v3.median_total_ms) == (250, 25)  # even: mean of the middle two
    assert v3.cost_usd == pytest.approx((4 * 10.0 + 8 * 40.0) / 1e6)


def test_last_24_hours_hourly_series(app, seeded):
    result, rows = metrics_at(app, seeded["project_id"], "24h")
    assert result.since == NOW - timedelta(hours=24)
    assert result.bucket_seconds == HOUR
    assert len(result.buckets) == 25
    assert result.buckets[0] == datetime(2026, 3, 9, 12, tzinfo=UTC)
    assert result.buckets[-1] == datetime(2026, 3, 10, 12, tzinfo=UTC)
    series = rows[2].series
    assert all(len(values) == 25 for values in series.values())
    at = {start.hour: i for i, start in enumerate(result.buckets) if start.day == 10}
    assert series["replies"][at[9]] == 4 and series["error_rate"][at[9]] == 0.5
    assert series["replies"][at[10]] == 2 and series["median_ttft_ms"][at[10]] == 350
    assert series["replies"][at[11]] == 2 and series["median_ttft_ms"][at[11]] == 200
    assert series["up_rate"][at[11]] == 1.0 and series["fallback_rate"][at[11]] == 0.5
    assert sum(series["replies"]) == 8
    assert series["median_ttft_ms"][at[12]] is None
    assert rows[3].series["replies"][at[8]] == 4


def test_seven_days_adds_older_replies_and_an_even_median(app, seeded):
    result, rows = metrics_at(app, seeded["project_id"], "7d")
    assert [r.version.version for r in result.versions] == [2, 3, 4]
    v2 = rows[2].figures
    assert v2.replies == 9
    assert (v2.median_ttft_ms, v2.median_total_ms) == (350, 3500)  # six complete replies
    assert (v2.mean_tokens_in, v2.mean_tokens_out) == (35, 350)
    assert rows[4].figures.cost_usd is None and rows[4].figures.replies == 1
    assert result.bucket_seconds == DAY
    assert result.buckets[0] == datetime(2026, 3, 3, tzinfo=UTC) and len(result.buckets) == 8
    assert rows[2].series["replies"] == [0, 0, 0, 0, 0, 0, 1, 8]
    assert rows[4].series["replies"] == [0, 0, 0, 0, 0, 1, 0, 0]


def test_all_time_by_day_from_the_first_reply(app, seeded):
    result, rows = metrics_at(app, seeded["project_id"], "all")
    assert result.since is None
    assert [r.version.version for r in result.versions] == [2, 3, 4, 1]
    assert rows[1].figures.replies == 1 and rows[1].figures.median_total_ms == 500
    assert result.bucket_seconds == DAY
    assert result.buckets[0] == datetime(2026, 2, 8, tzinfo=UTC) and len(result.buckets) == 31
    assert rows[1].series["replies"][0] == 1


def test_all_time_by_week_once_traffic_spans_more_than_sixty_days(app, seeded):
    with app.app_context():
        chat = add_conversation(seeded["project_id"])
        add_rows([reply(chat, version_id(seeded["project_id"], 1), NOW - timedelta(days=100))])
    result, rows = metrics_at(app, seeded["project_id"], "all")
    assert result.bucket_seconds == WEEK
    assert result.buckets[0] == datetime(2025, 11, 24, tzinfo=UTC)  # the Monday before
    assert result.buckets[-1] == datetime(2026, 3, 9, tzinfo=UTC)
    assert len(result.buckets) == 16
    assert rows[1].series["replies"][0] == 1 and sum(rows[1].series["replies"]) == 2
    assert sum(rows[2].series["replies"]) == 9


def test_a_project_without_traffic_shows_production_with_nothing(app):
    owner = make_user(app)
    project_id = make_project(app, owner, system_prompt="Hello.")
    result, rows = metrics_at(app, project_id, "7d")
    assert list(rows) == [1] and rows[1].is_active and not result.has_traffic
    assert rows[1].figures.replies == 0 and rows[1].figures.median_ttft_ms is None
    assert rows[1].series["replies"] == [0] * 8
    result, rows = metrics_at(app, project_id, "all")  # no reply ever: no buckets at all
    assert result.buckets == [] and rows[1].series["replies"] == []


# --- the API -----------------------------------------------------------------------------------


@pytest.fixture
def live(app):
    """Traffic relative to the real clock: production 2 replies an hour ago, the candidate one
    reply two hours ago, production one reply two days ago."""
    owner = make_user(app, email="ada@example.com")
    project_id = make_project(app, owner, system_prompt="One.")
    with app.app_context():
        user = db.session.get(User, owner.id)
        prompt_services.create_version(
            user=user, project_id=project_id, content="Two.", model="dear", candidate=True,
            activate=False,
        )  # fmt: skip
        v1, v2 = version_id(project_id, 1), version_id(project_id, 2)
        chat = add_conversation(project_id)
        now = datetime.now(UTC)
        add_rows([
            reply(chat, v1, now - timedelta(hours=1), ttft_ms=100, total_ms=900, rating=1),
            reply(chat, v1, now - timedelta(hours=1), ttft_ms=300, total_ms=1100, rating=-1),
            reply(chat, v2, now - timedelta(hours=2), ttft_ms=50, total_ms=400,
                  tokens_in=1000, tokens_out=1000),
            reply(chat, v1, now - timedelta(days=2), status="error"),
        ])  # fmt: skip
    return {"owner": owner, "project_id": project_id}


def test_api_metrics_per_window(client, live):
    url = f"/api/projects/{live['project_id']}/prompts/metrics"
    headers = live["owner"].headers
    day = client.get(url + "?window=24h", headers=headers).get_json()
    assert day["window"] == "24h" and day["bucket_seconds"] == HOUR
    since = datetime.fromisoformat(day["since"])
    assert timedelta(hours=23) < datetime.now(UTC) - since < timedelta(hours=25)
    assert len(day["buckets"]) == 25
    production, candidate = day["data"]
    assert (production["version"], production["is_active"], production["is_candidate"]) == (
        1,
        True,
        False,
    )
    assert (candidate["version"], candidate["is_candidate"], candidate["model"]) == (
        2,
        True,
        "dear",
    )
    assert (production["replies"], production["up_rate"], production["error_rate"]) == (2, 0.5, 0)
    assert production["median_ttft_ms"] == 200 and production["median_total_ms"] == 1000
    assert candidate["cost_usd"] == pytest.approx((1000 * 10 + 1000 * 40) / 1e6)
    assert len(candidate["series"]["replies"]) == 25 and sum(candidate["series"]["replies"]) == 1

    week = client.get(url, headers=headers).get_json()  # the default
    assert week["window"] == "7d" and week["bucket_seconds"] == DAY
    assert week["data"][0]["replies"] == 3 and week["data"][0]["error_rate"] == pytest.approx(1 / 3)
    everything = client.get(url + "?window=all", headers=headers).get_json()
    assert everything["since"] is None and everything["data"][0]["replies"] == 3


@pytest.mark.parametrize("window", ["", "1d", "24H", "week"])
def test_api_refuses_an_unknown_window(client, live, window):
    resp = client.get(
        f"/api/projects/{live['project_id']}/prompts/metrics?window={window}",
        headers=live["owner"].headers,
    )
    assert resp.status_code == 422
    assert resp.get_json()["error"]["fields"] == {"window": "Use 24h, 7d or all."}


def test_another_users_metrics_are_404_even_with_a_bad_window(app, client, live):
    intruder = make_user(app, email="eve@example.com")
    for query in ("", "?window=nonsense"):
        resp = client.get(
            f"/api/projects/{live['project_id']}/prompts/metrics{query}", headers=intruder.headers
        )
        assert resp.status_code == 404


# --- the page ----------------------------------------------------------------------------------


def login(client, user):
    client.post("/login", data={"email": user.email, "password": user.password})


def test_prompt_tab_shows_the_metrics_table_with_charts(client, live):
    login(client, live["owner"])
    page = client.get(f"/projects/{live['project_id']}/prompts?window=24h")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    section = html[html.index('id="metrics-title"') :]
    rows = re.findall(r'<tr class="metrics-row[^"]*" data-version="(\d+)"', section)
    assert rows == ["1", "2"]
    assert re.search(r'data-version="1".*?production', section, re.S)
    assert re.search(r'data-version="2".*?candidate', section, re.S)
    assert section.count("<svg") == 2 * 9  # a chart per metric per version
    assert 'href="?window=24h#metrics" aria-current="true"' in section
    assert "50%" in section  # production's 👍 rate


def test_prompt_tab_falls_back_to_seven_days_for_an_unknown_window(client, live):
    login(client, live["owner"])
    html = client.get(f"/projects/{live['project_id']}/prompts?window=forever").get_data(
        as_text=True
    )
    assert 'href="?window=7d#metrics" aria-current="true"' in html


def test_prompt_tab_without_traffic_says_so(app, client):
    owner = make_user(app)
    project_id = make_project(app, owner)
    login(client, owner)
    html = client.get(f"/projects/{project_id}/prompts").get_data(as_text=True)
    assert "No replies in the last 7 days." in html and "<svg" not in html


# --- charts ------------------------------------------------------------------------------------


def test_line_chart_draws_segments_around_gaps_and_describes_itself():
    values = [1, 3, None, 2, 0, None, 1]
    svg = str(charts.sparkline(values, label="Median TTFT per hour", unit="ms"))
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    (path,) = re.findall(r'<path d="([^"]+)"', svg)
    assert path == "M2.0 14.0 L14.7 2.0 M40.0 8.0 L52.7 20.0"  # two segments, 0 at the bottom
    assert svg.count("<circle") == 1  # the lone last point
    summary = "Median TTFT per hour: lowest 0 ms, highest 3 ms, latest 1 ms"
    assert f'aria-label="{summary}"' in svg and f"<title>{summary}</title>" in svg


def test_bar_chart_has_a_bar_per_non_empty_bucket():
    svg = str(charts.sparkline([0, 2, 4, None], label="Replies per day", kind="bar"))
    assert svg.count("<rect") == 2
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert heights[1] == pytest.approx(2 * heights[0])


def test_chart_text_is_escaped_and_an_empty_series_says_no_data():
    svg = str(charts.sparkline([], label='<script>alert("x")</script>'))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "no data" in svg
    assert "<path" not in str(charts.sparkline([None, None], label="x"))


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(None, "", "—"), (0.256, "%", "26%"), (1234.6, "ms", "1,235 ms"), (0.00316, "$", "$0.0032"),
     (12.5, "$", "$12.50"), (3.0, "", "3"), (2.26, "", "2.3")],
)  # fmt: skip
def test_metric_values_are_formatted_for_people(value, unit, text):
    assert charts.metric_value(value, unit) == text
