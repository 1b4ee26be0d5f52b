"""Plain factory functions for test data, going through the real services.

They return small snapshots (not ORM objects) so nothing detached leaks between app contexts."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from app.auth import services as auth_services
from app.extensions import db
from app.models import User
from app.projects import services as project_services

DEFAULT_PASSWORD = "correct horse battery"
_seq = itertools.count(1)


@dataclass(frozen=True)
class UserInfo:
    id: int
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(app, email: str | None = None, password: str = DEFAULT_PASSWORD, name=None):
    email = email or f"user{next(_seq)}@example.com"
    with app.app_context():
        user = auth_services.register_user(email=email, password=password, name=name)
        return UserInfo(user.id, user.email, password, auth_services.token_for(user))


def make_project(
    app, user: UserInfo, name: str = "Support bot", description: str = "", system_prompt=None
) -> int:
    with app.app_context():
        owner = db.session.get(User, user.id)
        project = project_services.create_project(
            user=owner, name=name, description=description, system_prompt=system_prompt
        )
        return project.id


def make_key(app, user: UserInfo, name: str = "app", **options) -> tuple[int, str]:
    """An API key of ``user``: its id and its secret."""
    from app.keys import services as key_services

    with app.app_context():
        owner = db.session.get(User, user.id)
        key, secret = key_services.create_key(user=owner, name=name, **options)
        return key.id, secret


def make_share_link(app, user: UserInfo, project_id: int, **options) -> tuple[int, str]:
    """A share link of the project, through the real service: its id and its token."""
    from app.share import services as share_services

    with app.app_context():
        owner = db.session.get(User, user.id)
        link = share_services.create_link(user=owner, project_id=project_id, **options)
        return link.id, link.token


def make_conversation(app, user: UserInfo, project_id: int, message: str = "Hello") -> int:
    """A conversation with one exchange, answered by whichever provider the app is set up with."""
    from app.chat import services as chat_services
    from app.chat import start as start_turn

    with app.app_context():
        owner = db.session.get(User, user.id)
        turn = start_turn.send(user=owner, project_id=project_id, message=message)
        chat_services.complete_turn(turn)
        return turn.conversation_id


def make_file(app, user: UserInfo, project_id: int, name: str = "notes.txt", content=b"notes"):
    """A stored project file, through the real upload service; returns its id."""
    import io

    from app.files import services as file_services

    with app.app_context():
        owner = db.session.get(User, user.id)
        project = project_services.get_project_for(owner, project_id)
        result = file_services.store_upload(project, filename=name, stream=io.BytesIO(content))
        return result.file.id


def make_version(app, user: UserInfo, project_id: int, content: str) -> int:
    """A new (active) prompt version, through the real service; returns its number."""
    from app.prompts import services as prompt_services

    with app.app_context():
        owner = db.session.get(User, user.id)
        result = prompt_services.create_version(user=owner, project_id=project_id, content=content)
        return result.version.version


def make_label(app, user: UserInfo, project_id: int, name: str, version: int) -> str:
    """A named label on a version, through the real service; returns its name."""
    from app.prompts import labels

    with app.app_context():
        owner = db.session.get(User, user.id)
        return labels.create_label(
            user=owner, project_id=project_id, name=name, version=version
        ).name


def make_comparison(
    app, user: UserInfo, project_id: int, message: str = "Which is better?", left=None, right=None
) -> int:
    """A comparison through the real service (both answers start in the background); its id.
    By default version 1 against itself under another model."""
    from app.compare import services as compare_services

    with app.app_context():
        owner = db.session.get(User, user.id)
        view = compare_services.start_comparison(
            user=owner,
            project_id=project_id,
            message=message,
            left=left or {"version": 1},
            right=right or {"version": 1, "model": "gpt-4o"},
        )
        return view.comparison.id


def wait_extracted(client, headers: dict, project_id: int, file_id: int, timeout=60.0) -> dict:
    """Poll the file API until the sandbox has extracted the file's text; returns its JSON."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        resp = client.get(f"/api/projects/{project_id}/files/{file_id}", headers=headers)
        body = resp.get_json()
        if body["text"]["status"] != "pending" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)
