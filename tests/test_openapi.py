"""The OpenAPI document (``app/openapi.py``, served at ``/api/openapi.json``) stays true.

- Every ``/api`` rule and method in ``app.url_map`` is documented and every documented operation
  is routed, so a new route without documentation fails here.
- The document is valid OpenAPI 3.1; exactly the ``@public`` views are documented public and
  exactly the rate-limited views document a 429.
- Real responses, made through the API, validate against their documented schemas: every
  response ``CheckedClient`` receives is checked (status documented, content type, body,
  server-sent events one by one), error bodies included.
"""

from __future__ import annotations

import io
import json
import uuid

import pytest
from flask_limiter.util import get_qualified_name
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app.api import path_template
from app.limits import limiter
from app.openapi import SSE_EVENTS, spec
from tests.factories import make_user
from tests.filehelp import settled
from tests.sse import parse_sse
from tools.fake_provider import closed_port_url

METHODS = {"get", "post", "put", "patch", "delete"}
DOC_URI = "urn:prompthub:openapi"


def routed_operations(app) -> dict[tuple[str, str], str]:
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.rule == "/api" or rule.rule.startswith("/api/"):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                found[(method.lower(), path_template(rule.rule))] = rule.endpoint
    return found


def documented_operations(doc) -> dict[tuple[str, str], dict]:
    return {
        (method, path): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_every_api_route_is_documented_and_every_operation_is_routed(app):
    routed, documented = routed_operations(app), documented_operations(spec())
    undocumented = sorted(set(routed) - set(documented))
    unrouted = sorted(set(documented) - set(routed))
    assert not undocumented, f"declare @operation(...) on these views: {undocumented}"
    assert not unrouted, f"documented but not routed: {unrouted}"
    assert len(routed) >= 29


def test_document_is_valid_openapi_3_1():
    OpenAPIV31SpecValidator(spec()).validate()


def test_exactly_the_public_views_are_documented_public(app):
    for key, endpoint in routed_operations(app).items():
        view_is_public = getattr(app.view_functions[endpoint], "is_public", False)
        documented_public = documented_operations(spec())[key].get("security") == []
        assert view_is_public == documented_public, key


def test_exactly_the_rate_limited_views_document_429(app):
    with app.app_context():
        for key, endpoint in routed_operations(app).items():
            view = app.view_functions[endpoint]
            limited = bool(limiter.limit_manager.decorated_limits(get_qualified_name(view)))
            documented = "429" in documented_operations(spec())[key]["responses"]
            assert limited == documented, key


def test_document_is_served_without_authentication(client):
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    assert resp.get_json() == spec()


def test_a_bad_bearer_token_is_401_even_on_public_operations(client):
    resp = client.get("/api/openapi.json", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert "401" in spec()["paths"]["/api/openapi.json"]["get"]["responses"]


# --- real responses against the document ---------------------------------------------------


class Validator:
    """Validates a response against the documented response for its operation and status."""

    def __init__(self):
        self.doc = spec()
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(DOC_URI, resource)
        self.seen: set[tuple[str, str, int]] = set()

    def schema_at(self, *pointer: str) -> Draft202012Validator:
        escaped = "/".join(p.replace("~", "~0").replace("/", "~1") for p in pointer)
        return Draft202012Validator(
            {"$ref": f"{DOC_URI}#/{escaped}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def response(self, method: str, path: str, status: int) -> tuple[list[str], dict]:
        """The documented response and where it is in the document (a JSON pointer's parts)."""
        responses = self.doc["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method.upper()} {path}: {status} is not documented"
        found = responses[str(status)]
        if "$ref" in found:
            name = found["$ref"].rsplit("/", 1)[1]
            return ["components", "responses", name], self.doc["components"]["responses"][name]
        return ["paths", path, method, "responses", str(status)], found

    def check(self, method: str, path: str, resp) -> None:
        self.seen.add((method, path, resp.status_code))
        where, documented = self.response(method, path, resp.status_code)
        content = documented.get("content")
        if not content:
            assert resp.get_data() == b"", f"{method} {path}: a body where none is documented"
            return
        for name, header in documented.get("headers", {}).items():
            value = resp.headers.get(name)
            assert value is not None or not header.get("required"), f"{path}: no {name} header"
            if value is not None:
                is_int = header["schema"].get("type") == "integer"
                Draft202012Validator(header["schema"]).validate(int(value) if is_int else value)
        pointer = [*where, "content"]
        if "*/*" in content:
            return  # any bytes
        assert resp.mimetype in content, f"{method} {path}: {resp.mimetype} is not documented"
        if resp.mimetype == "application/json":
            self.schema_at(*pointer, resp.mimetype, "schema").validate(resp.get_json())
        elif resp.mimetype == "text/event-stream":
            events, _ = parse_sse(resp.get_data(as_text=True))
            assert events, "an empty stream"
            for name, data in events:
                event = {"event": name, "data": json.dumps(data)}
                self.schema_at(*pointer, resp.mimetype, "schema").validate(event)
                self.schema_at("components", "schemas", SSE_EVENTS[name]).validate(data)
            names = [name for name, _ in events]
            assert names[-1] in {"done", "error"}, names
            if "/turns/" not in path:  # a new turn starts with `start`; attaching may not
                assert names[0] == "start", names


class CheckedClient:
    """A test client whose every answer is validated against the document."""

    def __init__(self, client, validator: Validator, headers=None):
        self.client, self.validator, self.headers = client, validator, headers or {}

    def __call__(self, method: str, path: str, values=None, *, headers=None, query="", **kw):
        url = path.format(**(values or {})) + query
        resp = self.client.open(
            url, method=method.upper(), headers={**self.headers, **(headers or {})}, **kw
        )
        resp.get_data()  # buffered, so the (file) body can be closed and still read
        resp.close()
        self.validator.check(method, path, resp)
        return resp


@pytest.fixture
def validator():
    return Validator()


@pytest.fixture
def api(client, validator):
    return CheckedClient(client, validator)


def upload(api, ids, name, content):
    return api(
        "post",
        "/api/projects/{project_id}/files",
        ids,
        data={"file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def test_real_responses_match_the_document(api, validator):
    # Accounts: public, then authenticated.
    resp = api("post", "/api/auth/register", json={"email": "a@example.com", "password": "pw"})
    assert resp.status_code == 422 and "password" in resp.get_json()["error"]["fields"]
    body = {"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"}
    assert api("post", "/api/auth/register", json=body).status_code == 201
    assert api("post", "/api/auth/register", json=body).status_code == 409
    login = {"email": body["email"], "password": "wrong!"}
    assert api("post", "/api/auth/login", json=login).status_code == 401
    assert api("get", "/api/auth/me").status_code == 401
    login["password"] = body["password"]
    token = api("post", "/api/auth/login", json=login).get_json()["token"]
    api.headers = {"Authorization": f"Bearer {token}"}
    assert api("get", "/api/auth/me").status_code == 200
    assert api("post", "/api/projects", data="name=x").status_code == 415
    not_json = {"data": "{", "content_type": "application/json"}
    assert api("post", "/api/projects", **not_json).status_code == 400
    assert api("post", "/api/projects", json={"name": " "}).status_code == 422

    # Projects and prompts.
    project = api("post", "/api/projects", json={"name": "Bot"}).get_json()
    assert project["active_prompt"] is None and project["default_prompt"]
    ids = {"project_id": project["id"]}
    assert api("get", "/api/projects").status_code == 200
    described = api("patch", "/api/projects/{project_id}", ids, json={"description": "d"})
    assert described.get_json()["description"] == "d"
    assert api("get", "/api/projects/{project_id}", {"project_id": 999}).status_code == 404
    path = "/api/projects/{project_id}/prompts"
    assert api("post", path, ids, json={"content": "Be kind.", "note": None}).status_code == 201
    assert api("post", path, ids, json={"content": "Be kind."}).status_code == 200
    inactive = {"content": "Be brief.", "activate": False}
    assert api("post", path, ids, json=inactive).status_code == 201
    assert api("get", path, ids).status_code == 200
    assert api("get", "/api/projects/{project_id}", ids).get_json()["active_prompt"]["version"] == 1
    assert api("get", path + "/{version}", {**ids, "version": 2}).status_code == 200
    assert api("post", path + "/{version}/activate", {**ids, "version": 2}).status_code == 200
    assert api("get", path + "/diff", ids, query="?from=1&to=2").status_code == 200
    assert api("get", path + "/diff", ids, query="?from=1").status_code == 422

    # Models, the candidate and the canary.
    models = api("get", "/api/models").get_json()["data"]
    assert models[0]["default"] is True
    settings = {"content": "Be bold.", "candidate": True, "model": models[1]["name"]}
    assert api("post", path, ids, json={**settings, "temperature": 0.3}).status_code == 201
    assert api("post", path, ids, json={**settings, "model": "gpt-9"}).status_code == 422
    assert api("get", path + "/release", ids).get_json()["candidate"]["version"] == 3
    assert api("put", path + "/canary", ids, json={"percent": 10}).status_code == 200
    assert api("put", path + "/canary", ids, json={"percent": 101}).status_code == 422
    assert api("delete", path + "/candidate", ids).get_json()["candidate"] is None
    assert api("post", path + "/{version}/candidate", {**ids, "version": 3}).status_code == 200
    assert api("post", path + "/{version}/candidate", {**ids, "version": 2}).status_code == 422
    promoted = api("post", path + "/candidate/promote", ids).get_json()
    assert promoted["production"]["version"] == 3 and promoted["candidate"] is None
    assert api("post", path + "/candidate/promote", ids).status_code == 409
    assert api("get", path + "/diff", ids, query="?from=2&to=3").get_json()["settings"]
    assert api("post", path + "/{version}/activate", {**ids, "version": 2}).status_code == 200

    # Output formats and labels.
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    as_json = {"content": "Answer in JSON.", "activate": False, "output_format": "json_schema"}
    saved = api("post", path, ids, json={**as_json, "output_schema": schema}).get_json()
    assert saved["output_format"] == "json_schema" and saved["output_schema"] == schema
    bad_schema = {**as_json, "output_schema": {"type": "nonsense"}}
    assert api("post", path, ids, json=bad_schema).status_code == 422
    labels = path + "/labels"
    made = api("post", labels, ids, json={"name": "staging", "version": 3})
    assert made.status_code == 201 and made.get_json()["version"] == 3
    assert api("post", labels, ids, json={"name": "staging", "version": 2}).status_code == 409
    assert api("post", labels, ids, json={"name": "no spaces", "version": 2}).status_code == 422
    staging = {**ids, "label": "staging"}
    assert api("put", labels + "/{label}", staging, json={"version": 2}).status_code == 200
    assert api("get", labels, ids).get_json()["data"][2] == {
        "name": "staging",
        "version": 2,
        "built_in": False,
    }
    unknown = {**ids, "label": "eu"}
    assert api("put", labels + "/{label}", unknown, json={"version": 2}).status_code == 404

    # Chat, as JSON and as a stream; conversations and messages.
    chat = "/api/projects/{project_id}/chat"
    pinned = api("post", chat, ids, json={"message": "Hi", "version": 3}).get_json()
    assert pinned["message"]["prompt_version"] == 3
    by_label = api("post", chat, ids, json={"message": "Hi", "label": "staging"}).get_json()
    assert by_label["message"]["prompt_version"] == 2
    assert api("post", chat, ids, json={"message": "Hi", "label": "nope"}).status_code == 404
    assert api("delete", labels + "/{label}", staging).status_code == 204
    assert api("post", chat, ids, json={"message": "Hi", "version": 99}).status_code == 422
    reply = api("post", chat, ids, json={"message": "Hello"}).get_json()
    ids["conversation_id"] = reply["conversation_id"]
    stream = {"message": "Again", "conversation_id": reply["conversation_id"], "stream": True}
    assert api("post", chat, ids, json=stream).mimetype == "text/event-stream"
    assert api("post", chat, ids, json={"regenerate": True}).status_code == 422
    again = {"projectId": ids["project_id"], "conversationId": ids["conversation_id"]}
    assert api("post", "/api/chat", json={**again, "regenerate": True}).status_code == 200
    assert api("post", "/api/chat", json={"message": "x", "projectId": 999}).status_code == 404
    assert api("get", "/api/projects/{project_id}/conversations", ids).status_code == 200
    metrics = api("get", path + "/metrics", ids, query="?window=24h").get_json()
    assert {row["version"]: row["replies"] for row in metrics["data"]} == {2: 4, 3: 1}
    assert api("get", path + "/metrics", ids).get_json()["window"] == "7d"
    assert api("get", path + "/metrics", ids, query="?window=1y").status_code == 422
    conversation = "/api/conversations/{conversation_id}"
    page = api("get", conversation + "/messages", ids).get_json()
    first_user = {**ids, "message_id": page["data"][0]["id"]}
    edited = api("post", "/api/messages/{message_id}/edit", first_user, json={"message": "Hi!"})
    assert edited.status_code == 200
    assert api("post", "/api/messages/{message_id}/select", first_user).status_code == 200
    titled = api("post", conversation + "/title", ids)  # no body
    assert titled.status_code == 200 and titled.get_json()["id"] == ids["conversation_id"]
    regenerate = conversation + "/regenerate"
    assert api("post", regenerate, ids).status_code == 200  # no body at all
    assert api("post", regenerate, ids, json={"stream": True}).mimetype == "text/event-stream"
    assert api("get", conversation, ids).status_code == 200
    assert api("patch", conversation, ids, json={"title": "Greetings"}).status_code == 200
    page = api("get", conversation + "/messages", ids, query="?html=1&limit=2").get_json()
    assert page["has_more"] and "html" in page["data"][-1]
    assert api("get", conversation + "/messages", ids, query="?limit=x").status_code == 422

    # Turns: attach to a finished one (its stored outcome), stop it (nothing changes).
    everything = api("get", conversation + "/messages", ids).get_json()["data"]
    last = everything[-1]
    ids["turn_id"] = last["id"]
    turn = "/api/turns/{turn_id}"
    assert api("get", turn + "/events", ids).mimetype == "text/event-stream"
    assert api("get", turn + "/events", ids, query="?after=0-2").status_code == 200
    assert api("get", turn + "/events", ids, query="?after=two").status_code == 422
    stopped = api("post", turn + "/stop", ids).get_json()
    assert stopped == {"id": last["id"], "conversation_id": last["conversation_id"],
                       "status": "complete"}  # fmt: skip

    # Feedback on a reply: set with a comment, refused on a user's message, removed.
    ids["message_id"] = last["id"]
    feedback = "/api/messages/{message_id}/feedback"
    rated = api("put", feedback, ids, json={"rating": "up", "comment": "Clear."}).get_json()
    assert rated["feedback"]["rating"] == "up" and rated["feedback"]["comment"] == "Clear."
    assert everything[0]["role"] == "user"
    asked = {**ids, "message_id": everything[0]["id"]}
    assert api("put", feedback, asked, json={"rating": "down"}).status_code == 422
    assert api("delete", feedback, ids).status_code == 204
    assert api("delete", feedback, asked).status_code == 422

    # Compare: two versions side by side (each answer a pinned conversation), the preference.
    comparisons = "/api/projects/{project_id}/comparisons"
    sides = {"left": {"version": 2}, "right": {"version": 3, "model": models[1]["name"]}}
    started = api("post", comparisons, ids, json={"message": "Which?", **sides}).get_json()
    assert started["right"]["model"] == models[1]["name"] and started["choice"] is None
    ids["comparison_id"] = started["id"]
    twice = {"message": "Which?", "left": {"version": 2}, "right": {"version": 2}}
    assert api("post", comparisons, ids, json=twice).status_code == 422
    listed = api("get", comparisons, ids, query="?limit=5").get_json()["data"]
    assert [c["id"] for c in listed] == [started["id"]]
    assert api("get", comparisons, ids, query="?limit=x").status_code == 422
    comparison = "/api/comparisons/{comparison_id}"
    assert api("get", comparison, ids).get_json()["left"]["turn_id"] == started["left"]["turn_id"]
    preference = comparison + "/preference"
    assert api("put", preference, ids, json={"choice": "left"}).get_json()["choice"] == "left"
    assert api("put", preference, ids, json={"choice": "best"}).status_code == 422

    # Spending against the budgets (test_budget.py checks the figures and the refusals).
    assert api("get", "/api/usage").get_json()["day"]["limit_usd"] == 5.0

    # Files.
    created = upload(api, ids, "notes.txt", b"some notes")
    assert created.status_code == 201
    assert upload(api, ids, "again.txt", b"some notes").get_json()["duplicate"] is True
    assert upload(api, ids, "evil.exe", b"MZ").status_code == 415
    assert upload(api, ids, "empty.txt", b"").status_code == 422
    image = upload(api, ids, "shot.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).get_json()
    files = "/api/projects/{project_id}/files"
    ids["file_id"] = created.get_json()["id"]
    assert api("get", files, ids).status_code == 200
    assert api("get", files + "/{file_id}", ids).status_code == 200
    assert api("patch", files + "/{file_id}", ids, json={"use_in_chat": True}).status_code == 200
    no_text = {**ids, "file_id": image["id"]}
    use = {"use_in_chat": True}
    assert api("patch", files + "/{file_id}", no_text, json=use).status_code == 422
    download = api("get", files + "/{file_id}/download", ids)
    assert download.status_code == 200 and download.data == b"some notes"
    assert api("post", files + "/{file_id}/sync", ids).status_code == 409
    assert api("delete", files + "/{file_id}", ids).status_code == 204

    # API keys: created (the secret once), listed, refused where their scope ends, revoked.
    made = api("post", "/api/keys", json={"name": "widget", "scope": "read"})
    assert made.status_code == 201 and made.get_json()["key"].startswith("phk_")
    assert api("post", "/api/keys", json={"name": ""}).status_code == 422
    assert api("post", "/api/keys", json={"name": "x", "scope": "all"}).status_code == 422
    key = {"Authorization": f"Bearer {made.get_json()['key']}"}
    assert api("get", "/api/keys", headers=key).status_code == 200
    assert api("post", "/api/keys", json={"name": "more"}, headers=key).status_code == 403
    key_ids = {"key_id": made.get_json()["api_key"]["id"]}
    assert api("delete", "/api/keys/{key_id}", key_ids).get_json()["revoked_at"]
    assert api("get", "/api/keys", headers=key).status_code == 401
    assert api("delete", "/api/keys/{key_id}", {"key_id": 999}).status_code == 404

    # Share links: created, refused with a bad origin, listed, revoked.
    links = "/api/projects/{project_id}/share-links"
    shared = {"allowed_origins": ["https://example.com"], "passcode": "open sesame"}
    made = api("post", links, ids, json=shared)
    assert made.status_code == 201 and made.get_json()["has_passcode"] is True
    bad_origin = {"allowed_origins": ["http://example.com"]}
    assert api("post", links, ids, json=bad_origin).status_code == 422
    listed = api("get", links, ids).get_json()["data"]
    assert listed[0]["url"] == made.get_json()["url"]
    link_ids = {**ids, "link_id": made.get_json()["id"]}
    assert api("delete", links + "/{link_id}", link_ids).get_json()["revoked_at"]
    assert api("delete", links + "/{link_id}", {**ids, "link_id": 999}).status_code == 404

    # Deleting, and logging out everywhere.
    assert api("delete", conversation, ids).status_code == 204
    assert api("get", conversation, ids).status_code == 404
    assert api("delete", "/api/projects/{project_id}", ids).status_code == 204
    assert api("post", "/api/auth/logout-all").status_code == 204
    assert api("get", "/api/auth/me").status_code == 401
    assert api("get", "/api/openapi.json", headers={"Authorization": ""}).status_code == 200

    checked = {(method, path) for method, path, _ in validator.seen}
    assert checked == set(documented_operations(validator.doc)), "operations left unchecked"


class TestWhenProvidersFail:
    @pytest.fixture
    def config_overrides(self):
        # A provider key pointing at a closed port: every provider call fails fast.
        return {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": closed_port_url() + "/v1"}

    def test_provider_failures_match_the_document(self, app, api):
        api.headers = make_user(app).headers
        project = api("post", "/api/projects", json={"name": "Bot"}).get_json()
        ids = {"project_id": project["id"]}
        chat = "/api/projects/{project_id}/chat"
        assert api("post", chat, ids, json={"message": "Hi"}).status_code == 502
        accept = {"Accept": "text/event-stream"}
        streamed = api("post", chat, ids, json={"message": "Hi"}, headers=accept)
        events, _ = parse_sse(streamed.get_data(as_text=True))
        assert events[-1][0] == "error"


def test_a_cross_origin_cookie_write_matches_the_document(app, client, api):
    user = make_user(app)
    client.post("/login", data={"email": user.email, "password": user.password})
    refused = api(
        "post", "/api/projects", json={"name": "Bot"}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    documented = {
        (method, path)
        for path, item in spec()["paths"].items()
        for method, operation in item.items()
        if method in METHODS and "403" in operation["responses"]
    }
    writes = {key for key in documented_operations(spec()) if key[0] != "get"}
    assert documented == writes


class TestWhenRateLimited:
    @pytest.fixture
    def config_overrides(self):
        return {
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://",
            "RATELIMIT_KEY_PREFIX": f"openapi-{uuid.uuid4().hex}",
            "RATELIMIT_LOGIN_ACCOUNT": "1 per minute",
        }

    def test_a_429_matches_the_document(self, api):
        body = {"email": "nobody@example.com", "password": "wrong password"}
        assert api("post", "/api/auth/login", json=body).status_code == 401
        limited = api("post", "/api/auth/login", json=body)  # headers checked too
        assert limited.status_code == 429


class TestWithAStorageQuota:
    @pytest.fixture
    def config_overrides(self):
        return {"STORAGE_QUOTA_PROJECT_FILES": 1}

    def test_a_quota_refusal_matches_the_document(self, app, api):
        api.headers = make_user(app).headers
        project = api("post", "/api/projects", json={"name": "Bot"}).get_json()
        ids = {"project_id": project["id"]}
        assert upload(api, ids, "a.txt", b"a").status_code == 201
        refused = upload(api, ids, "b.txt", b"b").get_json()["error"]
        assert refused["code"] == "storage_quota_exceeded"
        assert refused["quota"] == {"name": "project_files", "limit": 1, "used": 1, "adding": 1}
        listed = api("get", "/api/projects/{project_id}/files", ids).get_json()
        assert listed["storage"]["project"]["max_files"] == 1


class TestWithTheOpenAIFilesCopy:
    @pytest.fixture
    def config_overrides(self, fake):
        fake.reset()
        return fake.app_config(openrouter=False)

    def test_copied_and_failed_files_match_the_document(self, app, api, fake):
        api.headers = make_user(app).headers
        project = api("post", "/api/projects", json={"name": "Bot"}).get_json()
        ids = {"project_id": project["id"]}
        files = "/api/projects/{project_id}/files"

        def after_the_copy(file_id):  # the copy is a job (app/files/copies.py)
            settled(app)
            return api("get", files + "/{file_id}", {**ids, "file_id": file_id}).get_json()

        pending = upload(api, ids, "notes.txt", b"some notes").get_json()
        assert pending["openai"]["status"] == "pending"
        copied = after_the_copy(pending["id"])
        assert copied["openai"]["file"]["id"] == copied["openai"]["file_id"]
        fake.script("files", {"status": 500})
        failed = after_the_copy(upload(api, ids, "other.txt", b"other notes").get_json()["id"])
        assert failed["openai"]["status"] == "failed" and failed["openai"]["file"] is None
        listed = api("get", files, ids).get_json()["data"]
        assert [f["openai"]["status"] for f in listed] == ["failed", "synced"]
        retried = api("post", files + "/{file_id}/sync", {**ids, "file_id": failed["id"]})
        assert retried.get_json()["openai"]["status"] == "pending"
        assert after_the_copy(failed["id"])["openai"]["file"]["purpose"] == "assistants"
