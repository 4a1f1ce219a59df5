"""What every view of this service shares: the command context, and the record rules.

A rule finds the URL's record and checks the caller's right at its location before the request
body is even parsed (:func:`vigil_shared.web.record_rule`): place it under ``@requires`` (and
``@idempotent``) and above the flask-smorest decorators. The view reads what it found with
``loaded()`` and hands it to one command (:mod:`vigil_billing.commands`).
"""

from __future__ import annotations

from vigil_shared.commands import Context
from vigil_shared.web import if_match, loaded, record_rule, request_context  # noqa: F401 - views read these here

from .. import commands


def context(version: str | None = None) -> Context:
    """The command context; ``version`` is the caller's ``If-Match`` for a view that honours it."""
    return request_context(version=version)


def customer_rule(permission: str, *, must_exist: bool = False):
    """Checks the URL's ``customer_id``: 404 outside the caller's rights, as for an unknown id. ``loaded()`` is the live
    customer's replica entry: 404 when billing cannot find it, or with ``must_exist`` 422 for an unknown
    or deleted one (a write attaching a record to it)."""
    if must_exist:
        return record_rule(lambda customer_id, **_: commands.confirm_customer(context(), customer_id, permission))
    return record_rule(lambda customer_id, **_: commands.load_customer(context(), customer_id, permission))
