"""The backup archive: a gzip'd tar whose last member, ``manifest.json``, lists every other
member with its size and sha256.

Writing goes to a hidden temporary file beside the target, renamed into place only when the
manifest is written and the file synced: an archive that exists is whole. Reading extracts into a
folder with tarfile's ``data`` filter (no absolute paths, no links out, no devices), accepts only
the member names a backup makes, and checks every member against the manifest, so a truncated,
corrupted or edited archive is refused before anything is restored. Every refusal is an
``ArchiveError`` whose text is a sentence for the operator.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any, BinaryIO

FORMAT = "prompthub-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK = 1024 * 1024
# Every name a backup writes; anything else in an archive is refused.
MEMBER = re.compile(
    r"manifest\.json|database\.(sqlite3|pgdump)|files/[1-9][0-9]{0,9}/[0-9a-f]{32}|spool/[0-9]{1,20}\.json"
)


class ArchiveError(Exception):
    """The archive cannot be written or is not one to restore; ``str()`` says why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Hashing(io.RawIOBase):
    """Reads through ``fh`` and hashes what passes (tarfile reads exactly ``size`` bytes)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data


class ArchiveWriter:
    """``with ArchiveWriter(path) as out: out.add_file(...); out.finish(manifest)``.

    Without ``finish`` (an error on the way) the temporary file is removed and nothing appears
    at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.members: dict[str, dict[str, Any]] = {}
        self._tar: tarfile.TarFile | None = None

    def __enter__(self) -> ArchiveWriter:
        self._tar = tarfile.open(self.tmp, "w:gz", compresslevel=6)
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if self._tar is not None:  # not finished: drop the partial archive
            self._tar.close()
            self.tmp.unlink(missing_ok=True)

    def _open(self) -> tarfile.TarFile:
        if self._tar is None:
            raise RuntimeError("the archive is not open (use it in a with block, once)")
        return self._tar

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        if not MEMBER.fullmatch(name):
            raise ValueError(f"not an archive member name: {name!r}")
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o600
        return info

    def add_file(self, name: str, path: Path) -> dict[str, Any]:
        with open(path, "rb") as fh:
            return self.add_stream(name, fh, os.fstat(fh.fileno()).st_size)

    def add_stream(self, name: str, fh: BinaryIO, size: int) -> dict[str, Any]:
        """Adds ``size`` bytes read from ``fh``; returns (and records) their size and sha256."""
        reader = _Hashing(fh)
        try:
            self._open().addfile(self._info(name, size), reader)
        except OSError as exc:  # the source ended early ("unexpected end of data")
            raise ArchiveError(f"{name}: could not be read whole: {exc}") from exc
        entry = {"size": size, "sha256": reader.digest.hexdigest()}
        self.members[name] = entry
        return entry

    def finish(self, manifest: dict[str, Any]) -> None:
        """Writes the manifest (with the member list) last, syncs, and renames into place."""
        body = json.dumps({**manifest, "members": self.members}, indent=2).encode()
        tar = self._open()
        tar.addfile(self._info(MANIFEST, len(body)), io.BytesIO(body))
        tar.close()
        self._tar = None
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)


def read_archive(path: Path, into: Path) -> dict[str, Any]:
    """Extracts ``path`` into the folder ``into`` and returns its manifest, every member checked
    against it. ``ArchiveError`` for anything that is not a whole, unedited backup."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path} is not a file")
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = []
            for member in tar:  # streams through: a truncated archive fails here
                if not member.isfile() or not MEMBER.fullmatch(member.name):
                    raise ArchiveError(
                        f"{path} is not a PromptHub backup: unexpected member {member.name!r}"
                    )
                if member.name in names:
                    raise ArchiveError(f"{path}: member {member.name!r} appears twice")
                names.append(member.name)
                # The names are checked above (no "..", no absolute path, files only); the
                # "data" filter (Python 3.11.4+) also drops modes and owners from the archive.
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, into, filter="data")
                else:  # pragma: no cover (Python 3.11.0-3.11.3)
                    tar.extract(member, into)
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArchiveError(
            f"{path} cannot be read as a backup archive (corrupt or truncated?): {exc}"
        ) from exc
    manifest = _manifest(path, into)
    listed = manifest["members"]
    extra = sorted(set(names) - set(listed) - {MANIFEST})
    missing = sorted(set(listed) - set(names))
    if extra or missing:
        raise ArchiveError(
            f"{path} does not match its manifest: "
            + "; ".join(
                part
                for part in (
                    f"not listed: {', '.join(extra)}" if extra else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                )
                if part
            )
        )
    bad = []
    for name, entry in listed.items():
        member = into / name
        if member.stat().st_size != entry.get("size") or sha256_of(member) != entry.get("sha256"):
            bad.append(name)
    if bad:
        raise ArchiveError(
            f"{path}: checksum mismatch in {len(bad)} member(s): {', '.join(sorted(bad)[:5])}"
            " (the archive was changed or damaged after it was written)"
        )
    return manifest


def _manifest(path: Path, folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchiveError(f"{path} has no {MANIFEST}: not a whole PromptHub backup") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{path}: {MANIFEST} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a PromptHub backup (no '{FORMAT}' manifest)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(
            f"{path} has backup format {manifest.get('format_version')!r}; this code reads "
            f"format {FORMAT_VERSION} (restore it with the PromptHub version that wrote it)"
        )
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(isinstance(v, dict) for v in members.values()):
        raise ArchiveError(f"{path}: {MANIFEST} has no member list")
    return manifest
