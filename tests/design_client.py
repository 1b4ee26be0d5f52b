"""A client written only from the design documents' API summary, as a usage example.

It does what the design's front end does, over plain HTTP: register, log in, create a project,
save a system prompt, chat twice in the project (the second answer needs the first: one chat
per project), and upload a file. With ``--origin`` it behaves like that front end served from
another origin (the design's ``NEXT_PUBLIC_API_URL`` set-up): each call that a browser would
preflight is preflighted, and every answer must name the origin in
``Access-Control-Allow-Origin``, or a browser would hide it from the page.

    python -m tests.design_client http://127.0.0.1:5000
    python -m tests.design_client http://127.0.0.1:5000 --origin https://app.example.com

It uses nothing but the documented API (``GET /api/openapi.json`` describes it in full) and
``httpx``; the suite runs it against a real server (``tests/test_design_client.py``).
"""

from __future__ import annotations

import argparse
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx


class BlockedByBrowser(Exception):
    """A browser on ``origin`` would not let the page read this answer (CORS)."""


@dataclass
class Transcript:
    """What the client saw, for the reader (and the test) to check."""

    token: str = ""
    project: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    replies: list[dict[str, Any]] = field(default_factory=list)
    file: dict[str, Any] = field(default_factory=dict)


class DesignClient:
    def __init__(self, base_url: str, *, origin: str | None = None):
        self.origin = origin
        self.http = httpx.Client(base_url=base_url, timeout=30, trust_env=False)
        self.token: str | None = None

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.origin:
            headers["Origin"] = self.origin
            self._preflight(method, path, headers, json_body="json" in kwargs)
        resp = self.http.request(method, path, headers=headers, **kwargs)
        if self.origin and resp.headers.get("Access-Control-Allow-Origin") != self.origin:
            raise BlockedByBrowser(f"{method} {path}: the answer does not allow {self.origin}")
        return resp

    def _preflight(self, method: str, path: str, headers: dict, *, json_body: bool) -> None:
        """What a browser sends first for a call with an Authorization header or a JSON body."""
        asks = sorted(
            name.lower()
            for name in [*headers, *(["Content-Type"] if json_body else [])]
            if name.lower() not in ("origin", "accept")
        )
        if not asks and method in ("GET", "POST"):
            return  # a "simple" request: no preflight
        resp = self.http.options(
            path,
            headers={
                "Origin": self.origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": ", ".join(asks),
            },
        )
        allowed_methods = {
            m.strip().upper()
            for m in resp.headers.get("Access-Control-Allow-Methods", "").split(",")
        }
        allowed_headers = {
            h.strip().lower()
            for h in resp.headers.get("Access-Control-Allow-Headers", "").split(",")
        }
        if (
            resp.status_code >= 300
            or resp.headers.get("Access-Control-Allow-Origin") != self.origin
            or method not in allowed_methods
            or not set(asks) <= allowed_headers
        ):
            raise BlockedByBrowser(f"preflight of {method} {path} refused ({resp.status_code})")


def ok(resp: httpx.Response, status: int) -> dict[str, Any]:
    if resp.status_code != status:
        raise AssertionError(
            f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
        )
    return resp.json()


def run(base_url: str, *, origin: str | None = None, email: str | None = None) -> Transcript:
    client = DesignClient(base_url, origin=origin)
    try:
        return _session(client, email)
    finally:
        client.http.close()


def _session(client: DesignClient, email: str | None) -> Transcript:
    seen = Transcript()
    email = email or f"design-{secrets.token_hex(4)}@example.com"
    password = "correct horse battery"

    # Auth: POST /api/auth/register { email, password, name? }, then /login { email, password }.
    ok(client.call("POST", "/api/auth/register", json={"email": email, "password": password}), 201)
    login = ok(
        client.call("POST", "/api/auth/login", json={"email": email, "password": password}), 200
    )
    client.token = seen.token = login["token"]

    # Projects & prompts: POST /api/projects { name, description? }, GET it back,
    # POST /api/projects/:projectId/prompts { content } (the latest becomes the active prompt).
    created = ok(
        client.call(
            "POST", "/api/projects", json={"name": "Travel helper", "description": "Trips"}
        ),
        201,
    )
    project_id = created["id"]
    assert any(p["id"] == project_id for p in ok(client.call("GET", "/api/projects"), 200)["data"])
    seen.prompt = ok(
        client.call(
            "POST",
            f"/api/projects/{project_id}/prompts",
            json={"content": "You are a travel helper. Keep answers short."},
        ),
        201,
    )
    seen.project = ok(client.call("GET", f"/api/projects/{project_id}"), 200)

    # Chat: POST /api/chat { projectId, message }, twice; the project keeps one chat, so the
    # second message is answered with the first in the model's context.
    for message in ("I am planning a trip to Lisbon.", "Which city did I name?"):
        seen.replies.append(
            ok(
                client.call(
                    "POST", "/api/chat", json={"projectId": str(project_id), "message": message}
                ),
                200,
            )
        )

    # Files: POST /api/projects/:id/files (multipart/form-data), answered with its metadata.
    upload = {"file": ("packing-list.txt", b"passport\ncharger\nsunscreen\n", "text/plain")}
    seen.file = ok(client.call("POST", f"/api/projects/{project_id}/files", files=upload), 201)
    return seen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_url")
    parser.add_argument("--origin", help="behave like a page served from this origin")
    args = parser.parse_args(argv)
    seen = run(args.base_url, origin=args.origin)
    print(json.dumps(seen.__dict__, indent=2, default=str))  # noqa: T201


if __name__ == "__main__":
    main()
