"""Files of a record: upload with a size limit and a checked content type,
list, download, delete. Bytes go to the file store, metadata to ``customer_files``.

A declared content type is accepted only from the allow-list below and only when the file's
first bytes agree with it, so a renamed executable cannot pose as a PDF.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from typing import BinaryIO

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.config import var_dir
from vigil_shared.errors import Problem, get_or_404, validation_problem

from . import history
from .models import CustomerFile
from .storage import FileStore, LocalFileStore, TooLarge

log = logging.getLogger("vigil.customer.files")

MAX_FILE_BYTES = 10 * 1024 * 1024  # also bounded by VIGIL_MAX_BODY_BYTES, which limits every request
SNIFF_BYTES = 512


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the sniff boundary is fine
        return exc.start >= len(head) - 3
    return True


_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
ALLOWED: dict[str, Callable[[bytes], bool]] = {
    "application/pdf": lambda h: h.startswith(b"%PDF-"),
    "image/png": lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda h: h.startswith(b"\xff\xd8\xff"),
    "image/gif": lambda h: h.startswith((b"GIF87a", b"GIF89a")),
    "image/webp": lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP",
    "text/plain": _is_text,
    "text/csv": _is_text,
    "application/zip": lambda h: h.startswith(_ZIP),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": lambda h: h.startswith(_ZIP),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": lambda h: h.startswith(_ZIP),
}


def file_store() -> FileStore:
    store = current_app.extensions.get("vigil_customer_file_store")
    if store is None:
        cipher = current_app.extensions["vigil_runtime"].cipher
        store = current_app.extensions["vigil_customer_file_store"] = LocalFileStore(
            var_dir() / "customer-files", cipher
        )
    return store


def max_bytes() -> int:
    settings = current_app.extensions["vigil_settings"]
    return min(MAX_FILE_BYTES, settings.max_body_bytes)


def safe_filename(name: str | None) -> str:
    name = unicodedata.normalize("NFC", (name or "").replace("\\", "/").split("/")[-1])
    name = re.sub(r"[\x00-\x1f\x7f\"]", "", name).strip().strip(".")
    return name[:255] or "file"


class _Prefixed:
    """A stream that first yields the bytes already read for sniffing."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self.head:
            chunk, self.head = self.head, b""
            return chunk
        return self.rest.read(size)


def store_upload(
    session: Session, actor: history.Actor, customer_id: int, upload, description: str | None
) -> CustomerFile:
    content_type = (upload.mimetype or "").lower()
    if content_type not in ALLOWED:
        raise Problem(
            415,
            "This type of file is not accepted.",
            errors={"file": [f"Accepted types: {', '.join(sorted(ALLOWED))}."]},
        )
    head = upload.stream.read(SNIFF_BYTES)
    if not head:
        raise validation_problem({"file": ["The file is empty."]})
    if not ALLOWED[content_type](head):
        raise Problem(
            415,
            "The file's contents do not match its declared type.",
            errors={"file": [f"This is not a valid {content_type} file."]},
        )
    limit = max_bytes()
    store = file_store()
    try:
        stored = store.put(_Prefixed(head, upload.stream), limit)
    except TooLarge:
        raise Problem(
            413, f"Files are limited to {limit} bytes.", errors={"file": [f"At most {limit} bytes."]}
        ) from None
    item = CustomerFile(
        customer_id=customer_id,
        filename=safe_filename(upload.filename),
        content_type=content_type,
        size=stored.size,
        sha256=stored.sha256,
        storage_key=stored.key,
        description=description,
        uploaded_by=actor.name,
    )
    session.add(item)
    try:
        session.flush()
    except Exception:
        store.delete(stored.key)
        raise
    _record(session, actor, item, "file_add", new=item.filename)
    return item


def list_statement(customer_id: int):
    return (
        select(CustomerFile)
        .where(CustomerFile.customer_id == customer_id)
        .order_by(CustomerFile.created_at.desc(), CustomerFile.id.desc())
    )


def get_file(session: Session, customer_id: int, file_id: int) -> CustomerFile:
    return get_or_404(session, CustomerFile, file_id, "file", customer_id=customer_id)


def _record(session: Session, actor: history.Actor, item: CustomerFile, action: str, **change) -> None:
    """A history entry of the file's customer about the file."""
    history.record(
        session, actor, item.customer_id, action, target_type="file", target_id=item.id, field="file", **change
    )


def delete_file(session: Session, actor: history.Actor, item: CustomerFile) -> str:
    """Removes the metadata; returns the store key to remove once the transaction committed."""
    _record(session, actor, item, "file_delete", old=item.filename)
    session.delete(item)
    session.flush()
    return item.storage_key


def remove_blobs(keys: list[str]) -> None:
    """Best effort after commit: a leftover blob wastes space, a missing one would lose data."""
    store = file_store()
    for key in keys:
        try:
            store.delete(key)
        except OSError:
            log.warning("could not remove a stored file", extra={"storage_key": key})
