"""The record rules of billing's views, and the body of a customer's record.

Each view is ``@requires`` → a rule (:func:`vigil_shared.web.record_rule`: the URL's record is
found and the caller's right checked at its customer's location before the body is parsed) →
``@idempotent`` → flask-smorest; it reads the record with ``loaded()`` and calls one command of
:mod:`vigil_billing.commands` with ``context()``.
"""

from __future__ import annotations

from typing import Any

from vigil_shared.web import command_context as context
from vigil_shared.web import if_match, loaded, record_rule  # noqa: F401 - views read these here

from .. import commands


def customer_rule(permission: str, *, must_exist: bool = False):
    """Checks the URL's ``customer_id``: 404 outside the caller's rights, as for an unknown id. ``loaded()`` is the live
    customer's replica entry: 404 when billing cannot find it, or with ``must_exist`` 422 for an unknown
    or deleted one (a write attaching a record to it)."""
    if must_exist:
        return record_rule(lambda customer_id, **_: commands.confirm_customer(context(), customer_id, permission))
    return record_rule(lambda customer_id, **_: commands.load_customer(context(), customer_id, permission))


def located(record: Any, schema: Any, location_id: int | None, **more: Any) -> dict[str, Any]:
    """A customer's record as ``schema`` shows it, with the customer's ``location_id`` and ``more`` fields."""
    names = [name for name in schema._declared_fields if name != "location_id" and name not in more]
    return {**{name: getattr(record, name) for name in names}, "location_id": location_id, **more}
