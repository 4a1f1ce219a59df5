"""Where uploaded files' bytes live, behind a small interface so production can swap the backend.

The default :class:`LocalFileStore` keeps each file under ``$VIGIL_VAR_DIR/customer-files`` by an
opaque key (never the caller's file name), written to a temporary name and renamed into place, so
a reader never sees half a file. In production, ``VIGIL_VAR_DIR`` (or just its ``customer-files``
folder) goes on a persistent volume shared by every customer web process.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 64 * 1024
_KEY = re.compile(r"^[0-9a-f]{32}$")


class TooLarge(Exception):
    pass


@dataclass(frozen=True)
class Stored:
    key: str
    size: int
    sha256: str


class Readable(Protocol):
    """What a store reads an upload from: a binary file, or anything with its ``read``."""

    def read(self, size: int = -1, /) -> bytes: ...


class FileStore(Protocol):
    def put(self, stream: Readable, max_bytes: int) -> Stored: ...

    def open(self, key: str) -> Iterator[bytes]: ...

    def delete(self, key: str) -> None: ...


class LocalFileStore:
    """Files on a local (or mounted) filesystem, fanned out into 256 folders by key."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("malformed storage key")
        return self.root / key[:2] / key

    def put(self, stream: Readable, max_bytes: int) -> Stored:
        key = uuid.uuid4().hex
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".part")
        digest, size = hashlib.sha256(), 0
        try:
            with open(temporary, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge()
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return Stored(key, size, digest.hexdigest())

    def open(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        handle = open(path, "rb")  # noqa: SIM115 - chunks() below closes it, once the response is sent

        def chunks() -> Iterator[bytes]:
            with handle:
                while True:
                    chunk = handle.read(CHUNK)
                    if not chunk:
                        return
                    yield chunk

        return chunks()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
