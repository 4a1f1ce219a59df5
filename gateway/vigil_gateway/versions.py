"""ETags and ``If-Match`` for the gateway's own records (users, roles, locations, API keys).

A record's ETag is ``"<id>.<version>"``. An edit claims the next version in one conditional
``UPDATE``: with ``If-Match`` only if the version is still the one the caller read (412 otherwise,
also when another edit commits between the check and the write); without it, last write wins.
Sign-ins and key use never change a version: only what a client edits does.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from vigil_shared.commands import ensure_version
from vigil_shared.errors import STALE, Problem
from vigil_shared.http import etag_headers, etag_of

__all__ = ["claim_next_version", "etag_headers"]


def claim_next_version(session: Session, item, if_match: str | None) -> None:
    """412 unless ``if_match`` (when sent) names ``item``'s version; then moves it to the next one."""
    ensure_version(if_match, item.id, item.version)
    model = type(item)
    statement = update(model).where(model.id == item.id).values(version=model.version + 1)
    if (if_match or "").strip() not in ("", "*"):
        statement = statement.where(model.version == item.version)
    result = cast(CursorResult[Any], session.execute(statement.execution_options(synchronize_session=False)))
    if result.rowcount != 1:
        raise Problem(
            412,
            "The record changed since you read it. Reload it and apply your change again.",
            type=STALE,
            headers={"ETag": etag_of(item.id, item.version + 1)},
        )
    set_committed_value(item, "version", item.version + 1)
