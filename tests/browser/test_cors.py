"""A browser app on another origin uses the API through CORS, in real Chromium: the preflights
pass, bearer calls work and exposed headers are readable, while cookies never help and an
origin not in ``CORS_ORIGINS`` is refused by the browser itself.

The "frontend" is a blank page on a second loopback server (another port: another origin, the
same site, so the browser would send the session cookie if a script asked it to)."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from tests.browser.helpers import login
from tests.factories import DEFAULT_PASSWORD, make_user

pytestmark = pytest.mark.browser

BLANK = "<!doctype html><html><head><title>frontend</title></head><body></body></html>"

CALLS = """async ({api, email, password}) => {
  const json = {"Content-Type": "application/json"};
  const reg = await fetch(api + "/api/auth/register", {
    method: "POST", headers: json, body: JSON.stringify({email, password}),
  });
  const {token} = await reg.json();
  const auth = {...json, "Authorization": "Bearer " + token};
  const created = await fetch(api + "/api/projects", {
    method: "POST", headers: auth, body: JSON.stringify({name: "From afar"}),
  });
  const renamed = await fetch(api + "/api/projects/" + (await created.json()).id, {
    method: "PATCH", headers: auth, body: JSON.stringify({name: "Renamed"}),
  });
  const listed = await fetch(api + "/api/projects", {headers: auth});
  return {
    register: reg.status,
    created: created.status,
    renamed: renamed.status,
    names: (await listed.json()).data.map((p) => p.name),
    requestId: listed.headers.get("X-Request-ID"),
  };
}"""

WITH_COOKIES = """async (api) => {
  try {
    const resp = await fetch(api + "/api/projects", {credentials: "include"});
    return "read " + resp.status;
  } catch (err) {
    return "blocked";
  }
}"""

WITHOUT_COOKIES = """async (api) => {
  const resp = await fetch(api + "/api/projects");
  return [resp.status, (await resp.json()).error.code];
}"""


def blank_page(environ, start_response):
    return Response(BLANK, mimetype="text/html")(environ, start_response)


@pytest.fixture
def frontends():
    """Two blank pages on loopback servers of their own; the first is allowed."""
    servers = [make_server("127.0.0.1", 0, blank_page, threaded=True) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_port}" for s in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def config_overrides(frontends):
    return {"CORS_ORIGINS": frontends[0]}


def test_an_allowed_origin_uses_the_api_with_a_bearer_token(live_server, frontends, page):
    page.goto(frontends[0])
    result = page.evaluate(
        CALLS, {"api": live_server, "email": "ada@example.com", "password": DEFAULT_PASSWORD}
    )
    assert result["register"] == 201
    assert result["created"] == 201
    assert result["renamed"] == 200
    assert result["names"] == ["Renamed"]
    assert result["requestId"]  # an exposed header, readable by the page
    assert page.problems == []  # no preflight was refused


def test_cookies_never_help_a_page_on_another_origin(app, live_server, frontends, new_page):
    page = new_page()
    login(page, live_server, make_user(app, email="ada@example.com"))  # a session cookie now
    page.goto(frontends[0])
    # Sent along on request, the cookie is ignored and the browser hides the answer (no
    # Access-Control-Allow-Credentials); without it the page reads a plain 401.
    assert page.evaluate(WITH_COOKIES, live_server) == "blocked"
    assert page.evaluate(WITHOUT_COOKIES, live_server) == [401, "unauthorized"]
    page.goto(live_server + "/")
    assert page.url == live_server + "/"  # still logged in on the app's own origin


def test_an_origin_not_in_the_list_is_refused_by_the_browser(app, live_server, frontends, page):
    page.goto(frontends[1])
    outcome = page.evaluate(
        """async (api) => {
          try { await fetch(api + "/api/auth/login", {method: "POST",
                  headers: {"Content-Type": "application/json"}, body: "{}"});
                return "read"; }
          catch (err) { return "blocked"; }
        }""",
        live_server,
    )
    assert outcome == "blocked"
    assert any("CORS policy" in problem for problem in page.problems)
