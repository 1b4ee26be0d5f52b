"""Share link shapes: a link as its owner sees it, the body that creates one; and what a
visitor is answered (a message without anything of the owner's: no version, model, tokens or
feedback)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.apimodels import Body, Id, Out, Time


class ShareLinkUse(Out):
    conversations: int = Field(description="Conversations visitors started on the link.")
    visitors: int = Field(description="Distinct visitors (cookies) who chatted.")
    tokens_this_month: int = Field(
        description="Tokens (in + out) of the link's replies this calendar month (UTC)."
    )


class ShareLink(Out):
    id: int
    project_id: int
    url: str = Field(description="The public chat page: `/s/<token>` on this server.")
    embed: str = Field(description="An `<iframe>` snippet for an allowed origin's page.")
    has_passcode: bool = Field(description="Visitors enter a passcode first.")
    expires_at: Time | None
    revoked_at: Time | None
    allowed_origins: list[str] = Field(
        description="Origins allowed to embed the page (`frame-ancestors`), besides this one."
    )
    monthly_tokens: int | None = Field(
        description="Tokens a calendar month (UTC) for all visitors together; null: none."
    )
    use: ShareLinkUse
    created_at: Time


class ShareLinkList(Out):
    data: list[ShareLink]


class CreateShareLink(Body):
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    passcode: str | None = Field(
        None, description="Visitors must enter it first (4 to 72 bytes); stored as a hash."
    )
    allowed_origins: list[str] | None = Field(
        None,
        max_length=10,
        description="https origins (`https://example.com`, no path) whose pages may embed the "
        "chat in an iframe; plain http only for localhost.",
    )
    monthly_tokens: int | None = Field(None, ge=1, le=2_000_000_000)


class VisitorMessage(Out):
    id: int
    role: Literal["user", "assistant"]
    content: str
    status: str
    html: str | None = Field(description="An assistant reply's sanitised HTML.")


class VisitorMessages(Out):
    data: list[VisitorMessage]


class VisitorReply(Out):
    conversation_id: int
    message: VisitorMessage


class VisitorChat(Body):
    __required__ = ("message",)

    message: str | None = None
    conversation_id: Id | None = Field(None, description="One of this visitor's conversations.")
    stream: bool | None = None
