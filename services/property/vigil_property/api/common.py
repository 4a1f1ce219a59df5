"""What every view of this service shares: the command context, and the record rules.

A rule finds the URL's record and checks the caller's right at its location before the request
body is even parsed (:func:`vigil_shared.web.record_rule`); a view names it once with its
permission (``@blp.read("properties.view", …, rule=property_rule)``, :mod:`vigil_shared.endpoints`).
The view reads what it found with ``loaded()`` and hands it to one command (:mod:`vigil_property.commands`).
"""

from __future__ import annotations

from vigil_shared.catalog import NOT_DELETED  # noqa: F401 - views read it here
from vigil_shared.web import command_context as context
from vigil_shared.web import current_identity, current_runtime, if_match, loaded, loader_rule, record_rule  # noqa: F401 - views read these here

from .. import commands

A_PROPERTY = "/api/v1/properties/<int:property_id>"  # where a property's systems and equipment live
INACTIVE = "The property is inactive"  # what a write to anything of an inactive property answers (409)


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


# ``loaded()`` is ``(appointment, scoped property)`` for the URL's ``appointment_id``.
appointment_rule = loader_rule(commands.load_appointment, "appointment_id")
# The URL's ``customer_id``: outside the caller's rights, what an unknown id answers. ``loaded()`` is its
# location (404 for an unknown customer); for a write attaching a record to it (live_), the live customer's
# replica entry (422 for an unknown or deleted one).
customer_rule = loader_rule(commands.load_customer_location, "customer_id")
live_customer_rule = loader_rule(commands.confirm_customer, "customer_id")
