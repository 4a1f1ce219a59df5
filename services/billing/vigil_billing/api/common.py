"""The record rules of billing's views, and the body of a customer's record.

Each view is declared once (:mod:`vigil_shared.endpoints`: ``@blp.read(permission, …, rule=…)``):
``@requires`` → a rule (:func:`vigil_shared.web.record_rule`: the URL's record is found and the
caller's right checked at its customer's location before the body is parsed) → ``@idempotent`` →
flask-smorest; it reads the record with ``loaded()`` and calls one command of
:mod:`vigil_billing.commands` with ``context()``.
"""

from __future__ import annotations

from typing import Any

from vigil_shared.web import command_context as context  # noqa: F401 - views read these here
from vigil_shared.web import if_match, loaded, loader_rule, record_rule  # noqa: F401

from .. import commands


def located(record: Any, schema: Any, location_id: int | None, **more: Any) -> dict[str, Any]:
    """A customer's record as ``schema`` shows it, with the customer's ``location_id`` and ``more`` fields."""
    names = [name for name in schema._declared_fields if name != "location_id" and name not in more]
    return {**{name: getattr(record, name) for name in names}, "location_id": location_id, **more}


# The URL's customer_id: 404 outside the caller's rights, as for an unknown id. ``loaded()`` is the live
# customer's replica entry: 404 when billing cannot find it; for a write attaching a record to it (live_),
# 422 for an unknown or deleted one.
customer_rule = loader_rule(commands.load_customer, "customer_id")
live_customer_rule = loader_rule(commands.confirm_customer, "customer_id")

# The rules of billing's own records: ``loaded()`` is the URL's record with its customer's location
# (``Scoped…`` of :mod:`vigil_billing.commands`): 404 when unknown or outside the caller's rights.
invoice_rule = loader_rule(commands.load_invoice, "invoice_id")
method_rule = loader_rule(commands.load_method, "billing_method_id")
payment_rule = loader_rule(commands.load_payment, "payment_id")
recurring_rule = loader_rule(commands.load_recurring, "recurring_invoice_id")
scheduled_rule = loader_rule(commands.load_scheduled, "scheduled_payment_id")

PROCESSOR_DOWN = "The payment processor could not be reached"
