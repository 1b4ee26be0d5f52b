"""JSON Compare API: start a comparison (both replies generate in the background; attach to
each with ``GET /api/turns/<turn_id>/events``), read one or a project's list, and set the
preference."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from app.api import args, body
from app.apimodels import operation
from app.compare import services
from app.compare.schemas import (
    CompareStart,
    Comparison,
    ComparisonPage,
    ComparisonsQuery,
    Preference,
)
from app.limits import compare_per_user

bp = Blueprint("compare", __name__)

_DESCRIPTION = """\
The message is answered twice at once, by the `left` and the `right` side: each side is a prompt
version of the project (its text and settings), optionally under another model. Each answer is
a normal reply in a new conversation of its own, pinned to that version and model (it shows in
the chat with the other conversations), and the user's message and both reply rows are stored
before any provider is called. The answer is 201 as soon as both replies have started; they are
written on the server whatever the client does. Read each as server-sent events with
`GET /api/turns/{turn_id}/events` (its `turn_id`), stop it with `POST /api/turns/{turn_id}/stop`,
or read both with `GET /api/comparisons/{id}`. A comparison is two provider calls: it counts
twice against the per-user chat limit (`RATELIMIT_CHAT`)."""


@bp.post("/projects/<int:project_id>/comparisons")
@operation(
    "createComparison",
    "Answer one message with two versions side by side",
    tag="compare",
    rate_limited=True,
    description=_DESCRIPTION,
    body=CompareStart,
    responses={
        201: ("Started: both answers are being written.", Comparison),
        422: "A blank or too long `message`; a side that is not `{version, model?}` (`left`, "
        "`right`); a version number or a label the project does not have (`left.version`, "
        "`left.label`, …); a model not "
        "in `GET /api/models` (`left.model`, …); or both sides the same version under the same "
        "model (`right`).",
    },
)
@compare_per_user  # two provider calls: two hits of the chat budget
def create(project_id: int):
    data = body()
    view = services.start_comparison(
        user=current_user,
        project_id=project_id,
        message=data.message,
        left=data.left,
        right=data.right,
        variables=data.variables,
    )
    return Comparison.of(view), 201


@bp.get("/projects/<int:project_id>/comparisons")
@operation(
    "listComparisons",
    "A project's comparisons",
    tag="compare",
    description="Newest first, with both answers as stored now.",
    query=ComparisonsQuery,
    responses={
        200: ("The comparisons.", ComparisonPage),
        422: "`before` or `limit` is not a whole number.",
    },
)
def index(project_id: int):
    query = args()
    _, views, has_more = services.list_comparisons(
        user=current_user, project_id=project_id, before=query.before, limit=query.limit
    )
    return ComparisonPage(data=[Comparison.read(v) for v in views], has_more=has_more).as_json()


@bp.get("/comparisons/<int:comparison_id>")
@operation(
    "getComparison",
    "A comparison",
    tag="compare",
    description="With each side's answer as stored now (its text so far while it is written).",
    responses={200: ("The comparison.", Comparison)},
)
def show(comparison_id: int):
    return Comparison.of(services.get_comparison(user=current_user, comparison_id=comparison_id))


@bp.put("/comparisons/<int:comparison_id>/preference")
@operation(
    "setComparisonPreference",
    "Say which answer is better",
    tag="compare",
    description="`left`, `right` or `tie`; `null` clears it. It can be changed at any time.",
    body=Preference,
    responses={
        200: ("The comparison.", Comparison),
        422: "`choice` is missing or not one of these.",
    },
)
def preference(comparison_id: int):
    data = body(optional=True)
    view = services.set_preference(
        user=current_user,
        comparison_id=comparison_id,
        choice=data.choice if data.given("choice") else services.UNSET,
    )
    return Comparison.of(view)
