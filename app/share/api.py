"""JSON share links of a project: list, create, revoke (the owner's side; the visitors' routes
are pages, ``routes.public``)."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from app.api import body
from app.apimodels import operation
from app.limits import share_links_per_user
from app.share import services
from app.share.routes import embed_snippet, share_url
from app.share.schemas import CreateShareLink, ShareLink, ShareLinkList, ShareLinkUse

bp = Blueprint("share", __name__, url_prefix="/<int:project_id>/share-links")


def _link(link, use: dict) -> ShareLink:
    return ShareLink.read(
        link,
        url=share_url(link),
        embed=embed_snippet(link),
        has_passcode=link.passcode_hash is not None,
        allowed_origins=link.origins,
        use=ShareLinkUse.read(use.get(link.id, services.LinkUse())),
    )


@bp.get("")
@operation(
    "listShareLinks",
    "A project's share links",
    tag="share",
    description="Newest first, revoked ones included, each with its public URL, an iframe "
    "snippet and what its visitors used. Never the passcode.",
    responses={200: ("The links.", ShareLinkList)},
)
def index(project_id: int):
    links = services.list_links(user=current_user, project_id=project_id)
    use = services.usage_of(project_id)
    return ShareLinkList(data=[_link(link, use) for link in links]).as_json()


@bp.post("")
@operation(
    "createShareLink",
    "Share a project: a public chat page",
    tag="share",
    rate_limited=True,
    description="Anyone with the answer's `url` may chat with the project without an account "
    "(its serving version answers; the replies count against your budgets), until the link "
    "expires or is revoked. Visitors see only their own conversations; you see them all in "
    "the project (source `share`). At most `SHARE_LINKS_MAX` active links per project; counts "
    "against `RATELIMIT_SHARE_LINKS` with revocations and the share page.",
    body=CreateShareLink,
    responses={201: ("The new link.", ShareLink)},
)
@share_links_per_user
def create(project_id: int):
    data = body()
    link = services.create_link(
        user=current_user,
        project_id=project_id,
        expires_in_days=data.expires_in_days,
        passcode=data.passcode,
        allowed_origins=data.allowed_origins,
        monthly_tokens=data.monthly_tokens,
    )
    return _link(link, {}).as_json(), 201


@bp.delete("/<int:link_id>")
@operation(
    "revokeShareLink",
    "Revoke a share link",
    tag="share",
    rate_limited=True,
    description="The link's page, chat and history answer 404 from the next request on, "
    "mid-conversation included. Its conversations stay in the project. Revoking twice is the "
    "same as once.",
    responses={200: ("The revoked link.", ShareLink)},
)
@share_links_per_user
def revoke(project_id: int, link_id: int):
    link = services.revoke_link(user=current_user, project_id=project_id, link_id=link_id)
    return _link(link, services.usage_of(project_id)).as_json()
