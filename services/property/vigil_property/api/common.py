"""What every view of this service shares: the command context, and the record rules.

A rule finds the URL's record and checks the caller's right at its location before the request
body is even parsed (:func:`vigil_shared.web.record_rule`): place it under ``@requires`` (and
``@idempotent``) and above the flask-smorest decorators. The view reads what it found with
``loaded()`` and hands it to one command (:mod:`vigil_property.commands`).
"""

from __future__ import annotations

from vigil_shared.web import command_context as context
from vigil_shared.web import current_identity, current_runtime, if_match, loaded, record_rule  # noqa: F401 - views read these here

from .. import commands


def property_rule(permission: str, *more: str):
    """``loaded()`` is the URL's property (:class:`~vigil_property.commands.Scoped`): 404 when unknown or
    outside the caller's rights."""
    return record_rule(lambda property_id, **_: commands.load_property(context(), property_id, permission, *more))


def property_read_rule(permission: str):
    """:func:`property_rule` for the property read: ``loaded()`` holds the row a read shows
    (:func:`~vigil_property.commands.read_property`), not an ORM entity."""
    return record_rule(
        lambda property_id, **_: commands.read_property(
            current_runtime().db, current_identity(), property_id, permission, context
        )
    )


def appointment_rule(permission: str):
    """``loaded()`` is ``(appointment, scoped property)`` for the URL's ``appointment_id``."""
    return record_rule(lambda appointment_id, **_: commands.load_appointment(context(), appointment_id, permission))


def customer_rule(permission: str, *, must_exist: bool = False):
    """Checks the URL's ``customer_id`` location: outside the caller's rights, what an unknown id answers.
    ``loaded()`` is its location (404 for an unknown customer); with ``must_exist`` it is the live
    customer's replica entry (422 for an unknown or deleted one)."""
    if must_exist:
        return record_rule(lambda customer_id, **_: commands.confirm_customer(context(), customer_id, permission))
    return record_rule(lambda customer_id, **_: commands.load_customer_location(context(), customer_id, permission))
