"""JSON API keys: list, create (the secret answered once), revoke."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from app.api import body
from app.apimodels import operation
from app.keys import services
from app.keys.schemas import ApiKey, ApiKeyList, CreateKey, NewApiKey
from app.limits import keys_per_user

bp = Blueprint("keys", __name__, url_prefix="/keys")


@bp.get("")
@operation(
    "listApiKeys",
    "Your API keys",
    tag="keys",
    description="Newest first, revoked ones included. Never the secrets.",
    responses={200: ("The keys.", ApiKeyList)},
)
def index():
    return ApiKeyList(data=[ApiKey.read(k) for k in services.list_keys(current_user)]).as_json()


@bp.post("")
@operation(
    "createApiKey",
    "Create an API key",
    tag="keys",
    rate_limited=True,
    description="The answer holds the key itself (`key`), the only time it is shown: store it "
    "then. Send it as `Authorization: Bearer <key>`. At most `API_KEYS_MAX` active keys; "
    "counts against `RATELIMIT_KEYS` with revocations and the keys page. An API key cannot "
    "create keys (403 `insufficient_scope`).",
    body=CreateKey,
    responses={
        201: ("The new key and its secret.", NewApiKey),
        404: "`project_id` names no project of yours.",
    },
)
@keys_per_user
def create():
    data = body()
    key, secret = services.create_key(
        user=current_user,
        name=data.name,
        scope=data.scope,
        project_id=data.project_id,
        expires_in_days=data.expires_in_days,
        rate_per_minute=data.rate_per_minute,
        monthly_tokens=data.monthly_tokens,
    )
    return NewApiKey(api_key=ApiKey.read(key), key=secret).as_json(), 201


@bp.delete("/<int:key_id>")
@operation(
    "revokeApiKey",
    "Revoke an API key",
    tag="keys",
    rate_limited=True,
    description="The key is refused from its next request on, on every server. It stays in "
    "the list (revoked), with its history. Revoking twice is the same as once.",
    responses={200: ("The revoked key.", ApiKey)},
)
@keys_per_user
def revoke(key_id: int):
    return ApiKey.of(services.revoke_key(user=current_user, key_id=key_id))
