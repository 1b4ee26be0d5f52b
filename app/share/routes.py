"""Share link pages: the owner's (create, list, revoke) and the visitors' public chat
(``/s/<token>``).

``bp`` (the owner, logged in): ``/projects/<id>/share`` lists the project's links with their
URL, iframe snippet and use, creates one (form) and revokes one.

``public`` (anyone with the link, no account): ``GET /s/<token>`` the chat page (a passcode
form first when the link has one), ``POST /s/<token>/unlock``, ``POST /s/<token>/chat`` (JSON
``{message, conversation_id?, stream?}``: server-sent events or one JSON reply) and ``GET
/s/<token>/conversations/<id>/messages`` (the visitor's own history). Every request reads the
link (``services.live_link``): revoked or expired, it is a 404 at once. Writes carry the page's
CSRF token like every cookie-authenticated write (``auth.loading``). The visitor is told
nothing of the owner's: no account menu or links into the app, and messages without version,
model, tokens or feedback (``VisitorMessage``). Errors of the JSON routes are the API's
envelope; of the pages, a page of this layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing

from flask import (
    Blueprint,
    Response,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import RateLimitExceeded
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.api import json_body, parse_body
from app.chat import services as chat_services
from app.chat import turns
from app.chat.broker import Entry
from app.chat.render import render_reply
from app.chat.streaming import sse_response
from app.errors import AppError, error_body
from app.forms import ConfirmForm, apply_errors, checks_own_csrf
from app.limits import count_share_turn, share_links_per_user, share_unlock_per_address
from app.models import Role, ShareLink
from app.projects.services import get_project_for
from app.security_headers import framed_by
from app.share import services, visitors
from app.share.forms import ShareLinkForm, UnlockForm
from app.share.schemas import VisitorChat, VisitorMessage, VisitorMessages, VisitorReply

bp = Blueprint("share", __name__, url_prefix="/projects/<int:project_id>/share")
public = Blueprint("shared", __name__, url_prefix="/s")


# --- the owner's page ----------------------------------------------------------------------------


def share_url(link: ShareLink) -> str:
    return url_for("shared.page", token=link.token, _external=True)


def embed_snippet(link: ShareLink) -> str:
    return (
        f'<iframe src="{share_url(link)}" title="Chat" width="400" height="600" '
        'style="border:0"></iframe>'
    )


@bp.route("", methods=["GET", "POST"])
@login_required
@share_links_per_user
def index(project_id: int):
    project = get_project_for(current_user, project_id)
    form = ShareLinkForm()
    created = None
    if form.validate_on_submit():
        try:
            created = services.create_link(
                user=current_user,
                project_id=project.id,
                expires_in_days=form.expires_in_days.data,
                passcode=form.passcode.data,
                allowed_origins=form.allowed_origins.data,
                monthly_tokens=form.monthly_tokens.data,
            )
        except AppError as exc:
            apply_errors(form, exc)
        else:
            form = ShareLinkForm(formdata=None)
    status = 422 if form.errors or form.form_errors else (201 if created else 200)
    page = render_template(
        "share/index.html",
        project=project,
        form=form,
        links=services.list_links(user=current_user, project_id=project.id),
        use=services.usage_of(project.id),
        created=created,
        confirm=ConfirmForm(),
        share_url=share_url,
        embed_snippet=embed_snippet,
    )
    return page, status


@bp.post("/<int:link_id>/revoke")
@login_required
@share_links_per_user
def revoke(project_id: int, link_id: int):
    if ConfirmForm().validate_on_submit():
        services.revoke_link(user=current_user, project_id=project_id, link_id=link_id)
        flash("The share link is turned off: visitors get “not found” from now on.", "info")
    return redirect(url_for("share.index", project_id=project_id))


# --- the visitor's pages -------------------------------------------------------------------------

JSON_ENDPOINTS = frozenset({"shared.chat", "shared.messages"})


def _error(status: int, code: str, message: str, fields=None, headers=None) -> Response:
    if request.endpoint in JSON_ENDPOINTS:
        response = jsonify(error_body(code, message, fields))
    else:
        response = Response(
            render_template("share/error.html", status=status, message=message),
            mimetype="text/html",
        )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@public.errorhandler(AppError)
def app_error(exc: AppError):
    return _error(exc.status, exc.code, exc.message, exc.fields, exc.headers)


@public.errorhandler(CSRFError)
def csrf_error(exc: CSRFError):
    return _error(400, "csrf_failed", f"CSRF check failed: {exc.description}")


@public.errorhandler(RateLimitExceeded)
def rate_limited(exc: RateLimitExceeded):
    # Flask-Limiter adds Retry-After and the X-RateLimit-* headers after this.
    message = f"Too many messages (limit: {exc.description}). Wait a little and try again."
    return _error(429, "rate_limited", message)


@public.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    status = exc.code or 500
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
    codes |= {413: "payload_too_large", 415: "unsupported_media_type"}
    headers = dict(exc.get_headers()) if status == 405 else {}
    headers.pop("Content-Type", None)
    message = exc.description or exc.name
    return _error(status, codes.get(status, "http_error"), message, None, headers)


def _open(token: str, *, write: bool = False) -> tuple[ShareLink, visitors.Visitor]:
    """The live link (404) and the visitor, who must have entered its passcode if it has one;
    a ``write`` must carry the visitor's page token (400 ``csrf_failed``)."""
    link = services.live_link(token)
    visitor = visitors.current()
    if write:
        visitors.check_token(visitor, link.id)
    if link.passcode_hash is not None and not visitor.has_unlocked(link.id):
        raise services.PasscodeRequired()
    return link, visitor


def _page(link: ShareLink, visitor: visitors.Visitor, body: str, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/html")
    response.headers.update(framed_by(link.origins))
    return visitors.save(response, visitor)  # renews the visitor's 30 days


@public.get("/<token>")
def page(token: str):
    link = services.live_link(token)
    visitor = visitors.current()
    if link.passcode_hash is not None and not visitor.has_unlocked(link.id):
        html = render_template(
            "share/unlock.html",
            link=link,
            form=UnlockForm(),
            visitor_token=visitors.form_token(visitor, link.id),
        )
        return _page(link, visitor, html)
    conversation_id = None
    messages = []
    if not visitor.fresh:
        conversation_id = services.latest_conversation_id(link=link, visitor=visitor.id)
    if conversation_id is not None:
        messages = services.visitor_messages(
            link=link, visitor=visitor.id, conversation_id=conversation_id
        )
    html = render_template(
        "share/page.html",
        link=link,
        project_name=link.project.name,
        conversation_id=conversation_id,
        messages=messages,
        visitor_token=visitors.form_token(visitor, link.id),
    )
    return _page(link, visitor, html)


@public.post("/<token>/unlock")
@checks_own_csrf
@share_unlock_per_address
def unlock(token: str):
    link = services.live_link(token)
    visitor = visitors.current()
    visitors.check_token(visitor, link.id)
    form = UnlockForm()
    if form.validate_on_submit():
        if services.passcode_matches(link, form.passcode.data):
            visitor.unlock(link.id)
            return visitors.save(redirect(url_for("shared.page", token=token)), visitor)
        form.passcode.errors = ["That is not the passcode."]
    token_ = visitors.form_token(visitor, link.id)
    html = render_template("share/unlock.html", link=link, form=form, visitor_token=token_)
    return _page(link, visitor, html, 422)


def _message(row) -> VisitorMessage:
    html = render_reply(row) if row.role == Role.ASSISTANT else None
    return VisitorMessage.read(row, html=html)


@public.post("/<token>/chat")
@checks_own_csrf
def chat(token: str):
    link, visitor = _open(token, write=True)
    count_share_turn(link.id, None if visitor.fresh else visitor.id)
    data = parse_body(VisitorChat, json_body())
    turn = services.visitor_turn(
        link=link,
        visitor=visitor.id,
        message=data.message,
        conversation_id=data.conversation_id,
    )
    if data.stream or (
        data.stream is None and request.accept_mimetypes.best == "text/event-stream"
    ):
        response = sse_response(_visitor_events(turn))
    else:
        reply = chat_services.complete_turn(turn)
        response = jsonify(
            VisitorReply(conversation_id=turn.conversation_id, message=_message(reply)).as_json()
        )
    return visitors.save(response, visitor) if visitor.fresh else response


FAILED = "The assistant could not answer just now. Try again in a moment."


def _visitor_events(turn) -> Iterator[Entry | None]:
    """The turn's events as a visitor sees them: ``start`` ``{conversation_id, title}``,
    ``delta`` ``{text}``, then ``done`` ``{message}`` or ``error`` ``{error, message}``, the
    message a ``VisitorMessage`` and the error's wording the same for every failure (the
    owner's page says which provider failed and why; a visitor is not told)."""
    entries = turns.launch(turn)  # leaving does not stop the turn
    with closing(entries):
        for item in entries:
            if item is None or item.event in ("delta", "snapshot"):
                yield item
            elif item.event == "start":
                conversation = item.data["conversation"]
                data = {"conversation_id": conversation["id"], "title": conversation["title"]}
                yield Entry(None, "start", data)
            elif item.event in ("done", "error"):
                m = item.data["message"]
                message = VisitorMessage(
                    id=m["id"],
                    role=m["role"],
                    content=m["content"],
                    status=m["status"],
                    html=m.get("html"),
                ).as_json()
                data = {"message": message}
                if item.event == "error":
                    data["error"] = {"code": item.data["error"]["code"], "message": FAILED}
                yield Entry(None, item.event, data)
                return


@public.get("/<token>/conversations/<int:conversation_id>/messages")
def messages(token: str, conversation_id: int):
    link, visitor = _open(token)
    rows = services.visitor_messages(link=link, visitor=visitor.id, conversation_id=conversation_id)
    return VisitorMessages(data=[_message(row) for row in rows]).as_json()
