from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.extensions import db
from app.security import decode_token, hash_password, issue_token, password_problem, pwd_context
from tests.factories import make_user

OTHER_KEY = "not-our-key-but-long-enough-for-hs256-000"


def test_hashes_are_bcrypt_with_the_configured_cost(app):
    app.config["BCRYPT_ROUNDS"] = 12
    with app.app_context():
        hashed = hash_password("correct horse battery")
    assert hashed.startswith("$2b$12$")
    assert pwd_context.verify("correct horse battery", hashed)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 8"),
        ("x" * 73, "at most 72 bytes"),
        ("é" * 37, "at most 72 bytes"),  # 37 characters, 74 bytes
        ("x" * 72, None),
        ("é" * 36, None),
    ],
)
def test_password_rules_count_bytes(password, problem):
    result = password_problem(password)
    if problem is None:
        assert result is None
    else:
        assert problem in result


def test_tokens_round_trip_and_expire(app):
    with app.app_context():
        token = issue_token(7, 3)
        assert decode_token(token) == (7, 3)
        old = issue_token(7, 3, now=datetime.now(UTC) - timedelta(days=8))
        with pytest.raises(Exception, match="expired"):
            decode_token(old)


def test_tokens_signed_with_another_key_are_refused(app):
    forged = jwt.encode(
        {"sub": "1", "ver": 0, "iat": 0, "exp": 4102444800}, OTHER_KEY, algorithm="HS256"
    )
    with app.app_context(), pytest.raises(Exception, match="not valid"):
        decode_token(forged)


def test_unsigned_tokens_are_refused(app):
    forged = jwt.encode({"sub": "1", "ver": 0, "iat": 0, "exp": 4102444800}, None, algorithm="none")
    with app.app_context(), pytest.raises(Exception, match="not valid"):
        decode_token(forged)


def test_without_jwt_secret_tokens_are_signed_with_the_secret_key(app):
    with app.app_context():
        token = issue_token(7, 0)
    claims = jwt.decode(token, app.config["SECRET_KEY"], algorithms=["HS256"])
    assert claims["sub"] == "7"


class TestJwtSecret:
    """``JWT_SECRET`` signs API tokens; rotating it revokes tokens, not browser sessions."""

    KEY_A = "jwt-secret-a-0123456789-abcdefghijklmnopqrstuv"
    KEY_B = "jwt-secret-b-0123456789-abcdefghijklmnopqrstuv"

    @pytest.fixture
    def config_overrides(self):
        return {"JWT_SECRET": self.KEY_A}

    def test_tokens_are_signed_with_it_and_not_with_the_secret_key(self, app):
        with app.app_context():
            token = issue_token(7, 0)
            assert decode_token(token) == (7, 0)
        assert jwt.decode(token, self.KEY_A, algorithms=["HS256"])["sub"] == "7"
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, app.config["SECRET_KEY"], algorithms=["HS256"])
        signed_with_secret_key = jwt.encode(
            {"sub": "7", "ver": 0, "iat": 0, "exp": 4102444800},
            app.config["SECRET_KEY"],
            algorithm="HS256",
        )
        with app.app_context(), pytest.raises(Exception, match="not valid"):
            decode_token(signed_with_secret_key)

    def test_rotating_it_revokes_tokens_but_not_sessions(self, app, client, database_url, tmp_path):
        """Two apps over one database, as before and after a deploy that changed JWT_SECRET
        (SECRET_KEY unchanged)."""
        from app import create_app
        from tests.conftest import CSRFClient, base_config

        user = make_user(app, email="ada@example.com")
        client.post("/login", data={"email": user.email, "password": user.password})
        assert client.get("/api/auth/me", headers=user.headers).status_code == 200

        rotated = create_app(
            base_config(database_url, JWT_SECRET=self.KEY_B, UPLOAD_DIR=str(tmp_path / "up"))
        )
        rotated.test_client_class = CSRFClient
        try:
            after = rotated.test_client()
            old_token = after.get("/api/auth/me", headers=user.headers)
            assert old_token.status_code == 401
            assert old_token.get_json()["error"]["code"] == "token_invalid"
            # The browser's session cookie, carried over to the rotated app, still works.
            after.set_cookie("session", client.get_cookie("session").value)
            me = after.get("/api/auth/me")
            assert me.status_code == 200
            assert me.get_json()["user"]["email"] == "ada@example.com"
            assert after.get("/").status_code == 200  # and the pages
            # Logging in again gives a token of the new key, which the old app refuses.
            login = after.post(
                "/api/auth/login", json={"email": user.email, "password": user.password}
            )
            new_token = {"Authorization": f"Bearer {login.get_json()['token']}"}
            assert after.get("/api/auth/me", headers=new_token).status_code == 200
            assert client.get("/api/auth/me", headers=new_token).status_code == 401
        finally:
            rotated.extensions["broker"].shutdown()
            with rotated.app_context():
                db.session.remove()
                db.engine.dispose()


GEVENT_PROBE = """
from gevent import monkey; monkey.patch_all()
import time, gevent
from app import create_app
from app.security import hash_password, verify_password
app = create_app({"SECRET_KEY": "x" * 40, "BCRYPT_ROUNDS": 12, "DB_MIGRATE_COMMANDS": False})
gaps, stop = [], False
def ticker():
    last = time.perf_counter()
    while not stop:
        gevent.sleep(0.01)
        now = time.perf_counter(); gaps.append(now - last); last = now
with app.app_context():
    t = gevent.spawn(ticker); gevent.sleep(0.05)
    started = time.perf_counter()
    hashed = hash_password("correct horse battery")
    hashing = time.perf_counter() - started
    started = time.perf_counter()
    assert verify_password("correct horse battery", hashed)
    verifying = time.perf_counter() - started
    stop = True; t.join()
print(max(gaps), min(hashing, verifying))
"""


def test_bcrypt_does_not_freeze_a_gevent_worker():
    """Under gevent workers a login must not stall every other stream of the process."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", GEVENT_PROBE], capture_output=True, text=True, check=True
    )
    longest_gap, shortest_bcrypt = map(float, out.stdout.strip().splitlines()[-1].split())
    # Blocking, the ticker would wait a whole bcrypt (~0.25 s at cost 12, more on a busy
    # machine); off the hub it keeps ticking every 10 ms. Relative, so a loaded machine that
    # slows both does not fail it.
    assert longest_gap < shortest_bcrypt / 2


@pytest.fixture
def bcrypt_costs(monkeypatch):
    """The cost of every bcrypt computation, recorded by wrapping the bcrypt library itself
    (the real work still happens): the honest measure of how long a login takes."""
    import bcrypt

    costs: list[int] = []
    real_hashpw = bcrypt.hashpw

    def counting_hashpw(secret, salt):
        costs.append(int(salt.split(b"$")[2]))
        return real_hashpw(secret, salt)

    monkeypatch.setattr(bcrypt, "hashpw", counting_hashpw)
    return costs


LONG = "é" * 40  # 40 characters, 80 bytes: over bcrypt's 72


@pytest.mark.parametrize(
    ("email", "password"),
    [
        pytest.param("ada@example.com", "correct horse battery", id="right"),
        pytest.param("ada@example.com", "wrong password", id="wrong"),
        pytest.param("ada@example.com", LONG, id="wrong-over-72-bytes"),
        pytest.param("ada@example.com", "x" * 73, id="wrong-73-ascii"),
        pytest.param("bob@example.com", "wrong password", id="unknown"),
        pytest.param("bob@example.com", LONG, id="unknown-over-72-bytes"),
        pytest.param("bob@example.com", "x" * 200, id="unknown-200-ascii"),
        pytest.param("not an email", "wrong password", id="not-an-email"),
        pytest.param("not an email", LONG, id="not-an-email-over-72-bytes"),
        pytest.param("", "", id="empty"),
    ],
)
def test_login_does_the_same_bcrypt_work_for_every_input(
    app, client, bcrypt_costs, email, password
):
    from tests.factories import make_user

    make_user(app, email="ada@example.com")
    bcrypt_costs.clear()
    client.post("/api/auth/login", json={"email": email, "password": password})
    assert bcrypt_costs == [app.config["BCRYPT_ROUNDS"]]


@pytest.mark.parametrize("email", ["ada@example.com", "bob@example.com", "not an email"])
def test_the_login_page_does_the_same_bcrypt_work_for_every_address(
    app, client, bcrypt_costs, email
):
    """The page path too: an unknown address costs what a wrong password costs, and answers
    the same (issue 26, finding 9)."""
    from tests.factories import make_user

    make_user(app, email="ada@example.com")
    client.get("/login")
    bcrypt_costs.clear()
    resp = client.post("/login", data={"email": email, "password": "wrong password"})
    assert resp.status_code == 422
    assert "Invalid email or password." in resp.get_data(as_text=True)
    assert bcrypt_costs == [app.config["BCRYPT_ROUNDS"]]
