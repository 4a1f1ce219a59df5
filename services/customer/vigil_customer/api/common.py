"""What every view of this service shares: the command context, and the record rules.

A rule finds the URL's record and checks the caller's right at its location before the request
body is even parsed (:func:`vigil_shared.web.record_rule`): place it right under ``@requires`` (and
above ``@idempotent`` and the flask-smorest decorators). The view reads the record with
``loaded()`` and hands it to one command (:mod:`vigil_customer.commands`).
"""

from __future__ import annotations

from vigil_shared.runtime import current_runtime
from vigil_shared.web import if_match, loaded, record_rule, request_context  # noqa: F401 - views read these here

from .. import commands
from ..customers import Context


def context(version: str | None = None) -> Context:
    """The command context; ``version`` is the caller's ``If-Match`` (``if_match()``) for a view that honours it."""
    return request_context(Context, version=version)


def cipher():
    return current_runtime().cipher


def customer_rule(*, action: str | None = None, permission: str | None = None):
    """``loaded()`` is the URL's record. ``action`` checks the record's own ``view``/``modify``/``delete``
    right (customers.* or leads.* by kind); ``permission`` checks a tab's permission (notes, contacts,
    files…). Writes lock the record's row from this first read."""
    if action:
        return record_rule(lambda customer_id, **_: commands.load_customer(context(), customer_id, action))
    assert permission is not None, "customer_rule needs an action or a permission"
    return record_rule(lambda customer_id, **_: commands.load_customer_tab(context(), customer_id, permission))


def lead_rule(action: str):
    """``loaded()`` is the URL's record after checking ``leads.<action>`` at its location (whatever its kind)."""
    return record_rule(lambda customer_id, **_: commands.load_lead(context(), customer_id, action))


def archive_rule(permission: str):
    """``loaded()`` is the URL's record, locked, after checking ``permission`` (archive, unarchive) at its
    location; unlike a write rule it does not refuse an archived record."""
    return record_rule(lambda customer_id, **_: commands.load_customer_for(context(), customer_id, permission))
