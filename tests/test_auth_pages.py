import pytest

from tests.factories import DEFAULT_PASSWORD, make_user


def test_register_logs_in_and_lands_on_the_dashboard(client, auth):
    resp = auth.register(follow_redirects=True)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "Your projects" in page
    assert "Welcome to PromptHub" in page
    assert "Ada" in page


@pytest.mark.parametrize(
    ("email", "password", "confirm", "message"),
    [
        ("not-an-email", DEFAULT_PASSWORD, DEFAULT_PASSWORD, "email address"),
        ("ada@example.com", "short", "short", "at least 8"),
        ("ada@example.com", "x" * 73, "x" * 73, "at most 72 bytes"),
        ("ada@example.com", "é" * 37, "é" * 37, "at most 72 bytes"),
        ("ada@example.com", DEFAULT_PASSWORD, "different pass", "passwords differ"),
    ],
)
def test_register_shows_field_errors(client, email, password, confirm, message):
    resp = client.post("/register", data={"email": email, "password": password, "confirm": confirm})
    assert resp.status_code == 422
    assert message in resp.get_data(as_text=True)


def test_duplicate_email_is_refused_case_insensitively(app, client, auth):
    make_user(app, email="ada@example.com")
    resp = auth.register(email="  ADA@Example.COM ")
    assert resp.status_code == 422
    assert "already exists" in resp.get_data(as_text=True)


def test_login_with_normalised_email(app, client, auth):
    make_user(app, email="ada@example.com")
    resp = auth.login(email=" Ada@EXAMPLE.com ")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"


def test_wrong_password_and_unknown_email_get_the_same_error(app, client, auth):
    make_user(app, email="ada@example.com")
    wrong = auth.login(password="wrong password!")
    unknown = auth.login(email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 422
    assert "Invalid email or password." in wrong.get_data(as_text=True)
    assert "Invalid email or password." in unknown.get_data(as_text=True)


def test_over_long_password_at_login_is_a_form_error_not_a_500(app, client, auth):
    make_user(app, email="ada@example.com")
    resp = auth.login(password="é" * 60)
    assert resp.status_code == 422
    assert "Invalid email or password." in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [
        ("/projects/create", "/projects/create"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_next_redirect_only_goes_to_our_own_site(app, client, auth, next_url, expected):
    make_user(app, email="ada@example.com")
    resp = client.post(
        "/login?next=" + next_url,
        data={"email": "ada@example.com", "password": DEFAULT_PASSWORD},
    )
    assert resp.status_code == 302
    assert resp.headers["Location"] == expected


def test_pages_need_login_and_remember_where_you_were_going(client):
    resp = client.get("/projects/create")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login?next=/projects/create")


def test_logout_ends_the_session(app, client, auth):
    make_user(app, email="ada@example.com")
    auth.login()
    assert client.get("/").status_code == 200
    auth.logout()
    assert client.get("/").status_code == 302


def test_logout_needs_a_csrf_token(app, client, auth):
    make_user(app, email="ada@example.com")
    auth.login()
    client.post("/logout", csrf=False)
    assert client.get("/").status_code == 200


def test_forms_without_csrf_token_are_refused(app, raw_client):
    make_user(app, email="ada@example.com")
    resp = raw_client.post(
        "/login", data={"email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert resp.status_code == 400
    assert "CSRF" in resp.get_data(as_text=True)


def test_session_cookie_is_httponly_and_lax(app, client, auth):
    make_user(app, email="ada@example.com")
    resp = auth.login()
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Expires" not in cookie  # a browser-session cookie unless "keep me logged in"


def test_remember_me_makes_the_session_last(app, client):
    make_user(app, email="ada@example.com")
    resp = client.post(
        "/login",
        data={"email": "ada@example.com", "password": DEFAULT_PASSWORD, "remember": "y"},
    )
    assert "Expires" in resp.headers["Set-Cookie"]


def test_login_starts_a_fresh_session(app, client, auth):
    make_user(app, email="ada@example.com")
    with client.session_transaction() as sess:
        sess["planted"] = "by an attacker"
    auth.login()
    with client.session_transaction() as sess:
        assert "planted" not in sess


def test_logout_everywhere_ends_other_sessions(app, auth):
    make_user(app, email="ada@example.com")
    laptop, phone = app.test_client(), app.test_client()
    for c in (laptop, phone):
        c.post("/login", data={"email": "ada@example.com", "password": DEFAULT_PASSWORD})
        assert c.get("/").status_code == 200
    laptop.post("/logout-everywhere")
    assert phone.get("/").status_code == 302
    assert laptop.get("/").status_code == 302


def test_a_session_cookie_replayed_after_logout_is_logged_out(app, client, auth):
    make_user(app, email="ada@example.com")
    auth.login()
    stolen = client.get_cookie("session").value
    assert client.get("/").status_code == 200
    auth.logout()
    client.set_cookie("session", stolen)  # the copy taken before "Log out"
    page = client.get("/")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/login")
    api = client.get("/api/projects")
    assert api.status_code == 401
    assert api.get_json()["error"]["code"] == "unauthorized"


def test_logging_out_ends_only_that_session(app, auth):
    make_user(app, email="ada@example.com")
    laptop, phone = app.test_client(), app.test_client()
    for c in (laptop, phone):
        c.post("/login", data={"email": "ada@example.com", "password": DEFAULT_PASSWORD})
    laptop.post("/logout")
    assert laptop.get("/").status_code == 302
    assert phone.get("/").status_code == 200
