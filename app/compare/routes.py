"""The Compare tab (``/projects/<id>/compare``): two side pickers, one message, two columns
streaming together, the preference, and the recent comparisons. The page's JavaScript
(``static/js/compare.js``) talks to the JSON API; ``?c=<id>`` shows a comparison (and attaches
to replies still being written), ``?left=5&right=4`` preselects versions (a label works too:
``?left=staging&right=production``; an unknown one is a 404). Each version's named labels
show beside it in the pickers."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask_login import current_user, login_required

from app import catalog
from app.compare import services
from app.errors import NotFound
from app.llm import is_offline
from app.models.base import db_int
from app.prompts import labels as prompt_labels
from app.prompts import services as prompt_services

bp = Blueprint("compare", __name__, url_prefix="/projects/<int:project_id>/compare")

CHOICE_LABELS = {"left": "Left better", "right": "Right better", "tie": "Tie", None: "Not judged"}


@bp.before_request
@login_required
def require_login():
    return None


@bp.get("")
def index(project_id: int):
    project, versions = prompt_services.list_versions(user=current_user, project_id=project_id)
    shown = None
    shown_id = db_int(request.args.get("c"))
    if shown_id is not None:
        shown = services.get_comparison(user=current_user, comparison_id=shown_id)
        if shown.comparison.project_id != project.id:
            raise NotFound("No such comparison in this project.")
    _, recent, _ = services.list_comparisons(user=current_user, project_id=project.id)
    _, named = prompt_labels.list_labels(user=current_user, project_id=project.id)
    label_names: dict[int, list[str]] = {}
    for label in named:
        if label.version is not None and not label.built_in:
            label_names.setdefault(label.version.id, []).append(label.name)
    left, right = services.default_picks(
        project,
        versions,
        left=_pick(project, request.args.get("left")),
        right=_pick(project, request.args.get("right")),
        shown=shown,
    )
    return render_template(
        "compare/index.html",
        project=project,
        versions=versions,
        models=catalog.choices(),
        picks={"left": left, "right": right},
        shown=shown,
        recent=recent,
        labels=CHOICE_LABELS,
        label_names=label_names,
        offline=is_offline(current_app),
    )


def _pick(project, raw: str | None) -> int | None:
    """A side asked for in the URL: a version number, or a label's version (404 if unknown)."""
    if not raw or raw.isdigit() or prompt_labels.NAME_RULE.fullmatch(raw) is None:
        return db_int(raw)  # None for anything else: the default pick, as before
    return prompt_labels.labelled_version(project, raw).version
