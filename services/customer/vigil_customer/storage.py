"""Where uploaded files' bytes live, behind a small interface so production can swap the backend.

The default :class:`LocalFileStore` keeps each file under ``$VIGIL_VAR_DIR/customer-files`` by an
opaque key (never the caller's file name), written to a temporary name and renamed into place, so
a reader never sees half a file. Given the service's :class:`~vigil_shared.crypto.FieldCipher`, it
writes each chunk as a Fernet token on a line of its own after a marker (:data:`SEALED`): uploads
are credit applications and signed contracts, and no confidential value is kept at rest in
plaintext, files included. A file written before (no marker) is read as it is.

In production, ``VIGIL_VAR_DIR`` (or just its ``customer-files`` folder) goes on a persistent volume
shared by every customer web process.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from vigil_shared.crypto import FieldCipher

CHUNK = 64 * 1024
SEALED = b"vigil-sealed-file-v1\n"  # then one Fernet token of each chunk a line
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

    def __init__(self, root: Path, cipher: FieldCipher | None = None):
        self.root = Path(root)
        self.cipher = cipher

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
                if self.cipher is not None:
                    out.write(SEALED)
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge()
                    digest.update(chunk)
                    out.write(self.cipher.encrypt_bytes(chunk) + b"\n" if self.cipher is not None else chunk)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return Stored(key, size, digest.hexdigest())

    def open(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        handle = open(path, "rb")  # noqa: SIM115 - chunks() below closes it, once the response is sent

        sealed = handle.read(len(SEALED)) == SEALED
        if not sealed:
            handle.seek(0)  # written before files were encrypted: read as it is

        def chunks() -> Iterator[bytes]:
            with handle:
                yield from _plain_chunks(handle, self.cipher if sealed else None)

        return chunks()

    def reseal(self) -> int:
        """Rewrites every file under the cipher's first key (``rotate-keys``; a plaintext one gets
        encrypted): each is written to a temporary name and renamed into place. Returns how many."""
        if self.cipher is None:
            return 0
        count = 0
        for path in sorted(self.root.glob("??/*")):
            if not _KEY.match(path.name):
                continue
            with open(path, "rb") as handle:
                sealed = handle.read(len(SEALED)) == SEALED
                first = handle.readline().rstrip(b"\n") if sealed else b""
                if sealed and (not first or self.cipher.is_current_bytes(first)):
                    continue
                handle.seek(len(SEALED) if sealed else 0)
                temporary = path.with_suffix(".part")
                try:
                    with open(temporary, "wb") as out:
                        out.write(SEALED)
                        for chunk in _plain_chunks(handle, self.cipher if sealed else None):
                            out.write(self.cipher.encrypt_bytes(chunk) + b"\n")
                    os.replace(temporary, path)
                except BaseException:
                    temporary.unlink(missing_ok=True)
                    raise
            count += 1
        return count

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _plain_chunks(handle: BinaryIO, cipher: FieldCipher | None) -> Iterator[bytes]:
    """The file's bytes from ``handle``'s position: its token lines decrypted, or as they are."""
    while True:
        if cipher is None:
            chunk = handle.read(CHUNK)
        else:
            line = handle.readline().rstrip(b"\n")
            chunk = cipher.decrypt_bytes(line) if line else b""
        if not chunk:
            return
        yield chunk
