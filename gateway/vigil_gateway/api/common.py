"""The command context of a gateway request: its session, the caller and their sign-in or key."""

from __future__ import annotations

from flask import g

from vigil_shared.web import current_identity, if_match  # noqa: F401 - views read if_match() here

from ..commands import Context
from ..context import database, db_session, passwords, signed_in_user


def context(version: str | None = None) -> Context:
    """The command context; ``version`` is the caller's ``If-Match`` (``if_match()``) for a view that honours it."""
    return Context(
        session=db_session(),
        identity=current_identity(),
        request_id=g.get("request_id"),
        if_match=version,
        user=signed_in_user(),
        key_id=g.get("key_id"),
        key_creator_id=g.get("key_creator_id"),
        session_id=g.get("session_id"),
        database=database(),
        passwords=passwords(),
    )
