"""The Compare API's shapes: a comparison and its two sides, a page of them, and the bodies that
start one and record the preference."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SkipValidation

from app.apimodels import Body, Checked, Out, Query, QueryInt, Time, checked
from app.chat.schemas import MESSAGE, Message, Values
from app.compare import services


class ComparisonSide(Out):
    version: int | None = Field(
        description="The prompt version number that answers (null: since deleted)."
    )
    model: str = Field(description="The model that answers: the one asked for, else the version's.")
    conversation_id: int | None = Field(
        description="The conversation pinned to this side, where the answer is a normal reply "
        "(null once that conversation was deleted)."
    )
    turn_id: int | None = Field(
        description="Read the answer as it is written: `GET /api/turns/{turn_id}/events`; stop "
        "it: `POST /api/turns/{turn_id}/stop`. The reply's id."
    )
    reply: Message | None = Field(
        description="The answer as stored now, with its rendered `html` and `meta` (`status` "
        "`streaming` while it is written); null once deleted."
    )

    @classmethod
    def read(cls, row: services.SideView, **more: Any) -> ComparisonSide:
        reply = row.reply
        return super().read(
            row,
            turn_id=reply.id if reply else None,
            reply=Message.read(reply, html=True) if reply else None,
        )


class Comparison(Out):
    id: int
    project_id: int
    message: str = Field(description="The one message both sides answered.")
    left: ComparisonSide
    right: ComparisonSide
    choice: Literal["left", "right", "tie"] | None = Field(
        description="Which answer is better; null: not judged yet."
    )
    chosen_at: Time | None
    created_at: Time

    @classmethod
    def read(cls, row: services.ComparisonView, **more: Any) -> Comparison:
        return super().read(
            row.comparison, left=ComparisonSide.read(row.left), right=ComparisonSide.read(row.right)
        )


class ComparisonPage(Out):
    data: list[Comparison]
    has_more: bool = Field(description="Older comparisons exist (pass `before`).")


class ComparisonsQuery(Query):
    before: QueryInt = Field(None, description="A comparison id: only older ones.")
    limit: QueryInt = Field(
        services.LIST_DEFAULT, description="Page size (default 20), clamped to 1–100."
    )


class CompareSide(Body):
    __schema_extra__ = {"anyOf": [{"required": ["version"]}, {"required": ["label"]}]}

    # Checked by the service, which names the side in its messages (``left.version``).
    version: Checked = checked(
        {"type": "integer", "minimum": 1, "maximum": 2147483647},
        description="A prompt version number of the project (or give `label`).",
    )
    label: Checked = checked(
        {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,39}$"},
        description="A label of the project (`staging`, `production`, …) instead of "
        "`version`: the version it points at now (an unknown label is a 422 on `left.label`).",
    )
    model: Checked = checked(
        {"type": ["string", "null"]},
        description="A model from `GET /api/models` answering instead of the version's own "
        "(null: the version's).",
    )


class CompareStart(Body):
    __required__ = ("message", "left", "right")

    # Checked by the service: a side that is not an object is a 422 naming it.
    message: Checked = checked({"type": "string"}, description=MESSAGE)
    left: Annotated[CompareSide, SkipValidation] = None
    right: Annotated[CompareSide, SkipValidation] = None
    variables: Values | None = Field(
        None,
        description="Template variable values for both sides (docs/templates.md), as a chat's "
        "`variables`; each side's version checks them (a 422 `variables_invalid` names one).",
    )


class Preference(Body):
    __required__ = ("choice",)

    choice: Checked = checked(
        {"enum": ["left", "right", "tie", None]}, description="null: not judged."
    )
