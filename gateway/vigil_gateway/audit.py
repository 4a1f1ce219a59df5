"""The append-only audit log: sign-ins, credentials, rights, and every unmasked confidential read.

Entries are written on their own, outside the request's transaction, so a refused request (rolled
back) still leaves its trace; in a web request on the thread's kept autocommit connection (one
round trip, committed before the answer is sent), elsewhere in a short transaction of their own.
The table itself refuses UPDATE and DELETE (database triggers, see migration 0002).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from flask import current_app, g, has_request_context, request
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from vigil_shared.db import Database, utcnow
from vigil_shared.identity import Identity
from vigil_shared.web import CONFIDENTIAL_READS_HEADER

from .models import AuditEntry

log = logging.getLogger("vigil.gateway.audit")

SUCCESS, FAILURE, DENIED = "success", "failure", "denied"
_INSERT = insert(AuditEntry)  # built once: every sign-in, lookup and confidential read writes one
_TABLE = AuditEntry.__table__
KEPT_CONNECTIONS = "vigil_gateway_identity_cache"  # its per-thread autocommit connection (IdentityCache.insert)


def record(
    db: Database,
    action: str,
    outcome: str = SUCCESS,
    *,
    actor: Identity | None = None,
    actor_name: str | None = None,
    target_type: str | None = None,
    target_id=None,
    details: dict | None = None,
) -> None:
    actor = actor or (g.get("identity") if has_request_context() else None)
    row = dict(
        occurred_at=utcnow(),
        actor_id=actor.subject if actor else None,
        actor_name=actor.username if actor else actor_name,
        actor_kind=actor.kind if actor else None,
        client_ip=(request.remote_addr if has_request_context() else None),
        request_id=(g.get("request_id") if has_request_context() else None),
        action=action,
        outcome=outcome,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        details=details or None,
    )
    try:
        kept = current_app.extensions.get(KEPT_CONNECTIONS) if has_request_context() else None
        if kept is not None and kept.db is db:
            kept.insert(_TABLE, row)  # every sign-in, technician lookup and confidential read
        else:
            with db.engine.begin() as conn:
                conn.execute(_INSERT, row)
    except Exception:  # an audit write must never be silently lost: it is logged in full instead
        log.exception(
            "audit entry could not be stored",
            extra={"audit_action": action, "outcome": outcome, "audit_entry": {k: str(v) for k, v in row.items()}},
        )
        raise


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
):
    """Newest first; each filter given narrows the entries, ``action`` ending in ``*`` to a prefix."""
    equal = [
        (AuditEntry.actor_name, actor),
        (AuditEntry.outcome, outcome),
        (AuditEntry.target_type, target_type),
        (AuditEntry.target_id, target_id),
    ]
    statement = select(AuditEntry).where(*(column == value for column, value in equal if value))
    if action:
        statement = statement.where(
            AuditEntry.action.startswith(action[:-1]) if action.endswith("*") else AuditEntry.action == action
        )
    if since:
        statement = statement.where(AuditEntry.occurred_at >= since)
    if until:
        statement = statement.where(AuditEntry.occurred_at < until)
    return statement.order_by(AuditEntry.id.desc())


def confidential_reads(db: Database, response):
    """Services name the confidential values they showed unmasked; each such response is audited
    (an ``after_request`` hook: the header is removed before the response leaves the gateway)."""
    reads = response.headers.pop(CONFIDENTIAL_READS_HEADER, None)
    if reads:
        try:
            entries = json.loads(reads)
        except ValueError:
            entries = [{"unparsed": reads[:500]}]
        for entry in entries:
            record(
                db,
                "confidential.read",
                target_type=entry.get("target_type"),
                target_id=entry.get("target_id"),
                details={"fields": entry.get("fields"), "path": request.path},
            )
    return response
