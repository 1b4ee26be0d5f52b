"""The embedded store: ``<root>/<project_id>/<stored_name>`` on the local disk (``UPLOAD_DIR``).

Uploads are staged in the project's own folder (``staging_dir``), so ``put`` is an atomic
rename on one filesystem: a stored file is whole or absent. Reads are plain file objects, which
gunicorn can send with ``sendfile``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.storage.base import ObjectInfo, ObjectMissing, Opened, StorageConfigError, check_name


class LocalStore:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"local directory {self.root}"

    def folder(self, project_id: int) -> Path:
        check_name(project_id, "0" * 32)
        return self.root / str(int(project_id))

    def path(self, project_id: int, name: str) -> Path:
        project_id, name = check_name(project_id, name)
        return self.root / str(project_id) / name

    def staging_dir(self, project_id: int) -> Path:
        """The project's folder itself: the rename in ``put`` stays on one filesystem."""
        return self.folder(project_id)

    def put(self, project_id: int, name: str, staged: Path, *, sha256: str) -> None:
        target = self.path(project_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)

    def open(self, project_id: int, name: str) -> Opened:
        try:
            fh = open(self.path(project_id, name), "rb")  # the caller closes it
        except FileNotFoundError:
            raise ObjectMissing(f"{self.path(project_id, name)} does not exist") from None
        return Opened(fh, os.fstat(fh.fileno()).st_size)

    def head(self, project_id: int, name: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(size=self.path(project_id, name).stat().st_size, sha256=None)
        except FileNotFoundError:
            return None

    @contextmanager
    def local_copy(self, project_id: int, name: str) -> Iterator[Path]:
        path = self.path(project_id, name)
        if not path.is_file():
            raise ObjectMissing(f"{path} does not exist")
        yield path

    def delete(self, project_id: int, name: str) -> None:
        self.path(project_id, name).unlink(missing_ok=True)

    def delete_project(self, project_id: int) -> int:
        folder = self.folder(project_id)
        count = sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageConfigError(f"UPLOAD_DIR {self.root} cannot be created: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageConfigError(f"UPLOAD_DIR {self.root} is not writable by this process")
