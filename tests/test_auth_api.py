from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.security import issue_token
from tests.conftest import bearer
from tests.factories import DEFAULT_PASSWORD, make_user


def test_register_returns_user_and_token(client):
    resp = client.post(
        "/api/auth/register",
        json={"email": "Ada@Example.com", "password": DEFAULT_PASSWORD, "name": "Ada"},
    )
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["user"]["email"] == "ada@example.com"
    assert body["user"]["name"] == "Ada"
    assert "password_hash" not in body["user"]
    me = client.get("/api/auth/me", headers=bearer(body["token"]))
    assert me.get_json()["user"]["id"] == body["user"]["id"]


def test_register_duplicate_email_is_409(app, client):
    make_user(app, email="ada@example.com")
    resp = client.post(
        "/api/auth/register", json={"email": "ADA@example.com", "password": DEFAULT_PASSWORD}
    )
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    ("body", "bad_field"),
    [
        ({"email": "nope", "password": DEFAULT_PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "x" * 73}, "password"),
        ({"email": "a@example.com"}, "password"),
        ({"email": 5, "password": DEFAULT_PASSWORD}, "email"),
        ({"email": "a@example.com", "password": DEFAULT_PASSWORD, "name": "n" * 81}, "name"),
    ],
)
def test_register_validation_errors_name_the_field(client, body, bad_field):
    resp = client.post("/api/auth/register", json=body)
    assert resp.status_code == 422
    err = resp.get_json()["error"]
    assert err["code"] == "validation_failed"
    assert bad_field in err["fields"]


def test_non_json_body_is_415(client):
    resp = client.post("/api/auth/register", data={"email": "a@example.com"})
    assert resp.status_code == 415
    assert resp.get_json()["error"]["code"] == "unsupported_media_type"


def test_malformed_json_is_400(client):
    resp = client.post(
        "/api/auth/register", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "invalid_json"


def test_json_array_body_is_400(client):
    resp = client.post("/api/auth/login", json=["a"])
    assert resp.status_code == 400


def test_login_returns_a_token(app, client):
    user = make_user(app, email="ada@example.com")
    resp = client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert resp.status_code == 200
    assert resp.get_json()["user"]["id"] == user.id
    assert resp.get_json()["token"]


def test_login_failures_do_not_reveal_whether_the_email_exists(app, client):
    make_user(app, email="ada@example.com")
    wrong = client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": "wrong password"}
    )
    unknown = client.post(
        "/api/auth/login", json={"email": "bob@example.com", "password": "wrong password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def test_api_without_credentials_is_401_json(client):
    resp = client.get("/api/projects")
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "unauthorized"


def test_expired_token_is_401(app, client):
    user = make_user(app)
    with app.app_context():
        old = issue_token(user.id, 0, now=datetime.now(UTC) - timedelta(days=8))
    resp = client.get("/api/auth/me", headers=bearer(old))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_expired"


def test_token_expiry_follows_config(app, client):
    app.config["JWT_EXPIRES_DAYS"] = 30
    user = make_user(app)
    with app.app_context():
        issued_20_days_ago = issue_token(user.id, 0, now=datetime.now(UTC) - timedelta(days=20))
    assert client.get("/api/auth/me", headers=bearer(issued_20_days_ago)).status_code == 200


def test_tampered_token_is_401(app, client):
    user = make_user(app)
    header, payload, signature = user.token.split(".")
    tampered = f"{header}.{payload}.{signature[::-1]}"
    resp = client.get("/api/auth/me", headers=bearer(tampered))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_invalid"


def test_token_for_a_deleted_or_unknown_user_is_401(app, client):
    with app.app_context():
        ghost = issue_token(999999, 0)
    assert client.get("/api/auth/me", headers=bearer(ghost)).status_code == 401


def test_logout_all_revokes_every_token(app, client):
    user = make_user(app)
    second = client.post(
        "/api/auth/login", json={"email": user.email, "password": user.password}
    ).get_json()["token"]
    assert client.post("/api/auth/logout-all", headers=user.headers).status_code == 204
    for token in (user.token, second):
        resp = client.get("/api/auth/me", headers=bearer(token))
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "token_revoked"


def test_bearer_token_alone_decides_even_with_a_session(app, client, auth):
    make_user(app, email="ada@example.com")
    bob = make_user(app, email="bob@example.com")
    auth.login()  # session for Ada
    resp = client.get("/api/auth/me", headers=bob.headers)
    assert resp.get_json()["user"]["email"] == "bob@example.com"
    bad = client.get("/api/auth/me", headers=bearer("garbage"))
    assert bad.status_code == 401


def test_bearer_requests_need_no_csrf_token(app, raw_client):
    user = make_user(app)
    resp = raw_client.post("/api/projects", json={"name": "Bot"}, headers=user.headers)
    assert resp.status_code == 201


def test_cookie_authenticated_api_writes_need_the_csrf_header(app, client, auth):
    make_user(app, email="ada@example.com")
    auth.login()
    assert client.get("/api/projects").status_code == 200
    refused = client.post("/api/projects", json={"name": "Bot"}, csrf=False)
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    assert client.post("/api/projects", json={"name": "Bot"}).status_code == 201


def test_pages_ignore_bearer_tokens(app, client):
    user = make_user(app)
    resp = client.get("/", headers=user.headers)
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]


@pytest.mark.parametrize(
    ("registered", "spelling"),
    [
        ("ada@example.com", " ADA@Example.COM "),
        ("ada@example.com", "ａda@example.com"),  # fullwidth a
        ("ada@example.com", "ada@ｅxample.com"),  # fullwidth e in the domain
        ("ada@example.com", "ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
        ("ada@bücher.example", "ada@xn--bcher-kva.example"),
        ("ada@xn--bcher-kva.example", "Ada@BÜCHER.example"),
    ],
)
def test_every_spelling_of_an_email_is_one_account(app, client, registered, spelling):
    user = make_user(app, email=registered)
    login = client.post("/api/auth/login", json={"email": spelling, "password": user.password})
    assert login.status_code == 200
    assert login.get_json()["user"]["id"] == user.id
    again = client.post(
        "/api/auth/register", json={"email": spelling, "password": DEFAULT_PASSWORD}
    )
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize("user_id", [2**31, 2**40, 2**64])
def test_a_signed_token_naming_an_id_beyond_32_bits_is_401(app, client, user_id):
    """Signed with our key, so only the id is wrong: it can name no row (PostgreSQL integer
    overflows at 2**31, SQLite at 2**63), and must not reach the query."""
    with app.app_context():
        token = issue_token(user_id, 0)
    resp = client.get("/api/auth/me", headers=bearer(token))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_invalid"


@pytest.mark.parametrize(
    "version",
    [
        pytest.param(None, id="no-ver"),
        pytest.param("0", id="string"),
        pytest.param(False, id="boolean"),
        pytest.param(0.0, id="float"),
        pytest.param(-1, id="negative"),
    ],
)
def test_a_signed_token_without_a_whole_version_is_401(app, client, version):
    """Signed with our key and naming a real user, but its ``ver`` claim is missing or not a
    version we issue: invalid, never read as version 0 (issue 26, finding 10)."""
    user = make_user(app)
    claims = {"sub": str(user.id), "iat": 0, "exp": 4102444800}
    if version is not None:
        claims["ver"] = version
    token = jwt.encode(claims, app.config["SECRET_KEY"], algorithm="HS256")
    resp = client.get("/api/auth/me", headers=bearer(token))
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "token_invalid"
