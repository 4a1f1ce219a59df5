"""What every view of this service shares: the command context, and the record rules.

A rule finds the URL's record and checks the caller's right at its location before the request
body is even parsed (:func:`vigil_shared.web.record_rule`): place it right under ``@requires`` (and
above ``@idempotent`` and the flask-smorest decorators). The view reads the record with
``loaded()`` and hands it to one command (:mod:`vigil_customer.commands`).
"""

from __future__ import annotations

from functools import partial

from vigil_shared.catalog import NOT_DELETED, register_catalog  # noqa: F401 - views read NOT_DELETED here
from vigil_shared.http import etag_headers
from vigil_shared.runtime import current_runtime
from vigil_shared.web import if_match, loaded, record_rule, request_context, request_session  # noqa: F401 - views read these

from .. import commands
from ..customers import Context

A_CUSTOMER = "/api/v1/customers/<int:customer_id>"  # where a record's tabs (contacts, files, notes, tags) live
LIKELY_DUPLICATES = (
    "Likely duplicates (`matches` you may view: id, name, kind and the reasons you may see; "
    "`other_matches`: how many elsewhere) or the email is in use"
)


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


def tab_rule(permission: str):
    """``customer_rule(permission=…)``, the rule of a tab whose right is the operation's own."""
    return customer_rule(permission=permission)


view_rule = customer_rule(action="view")  # the record's own view right, whatever the operation's permission


def lead_rule(permission: str):
    """``loaded()`` is the URL's record after checking ``permission`` (``leads.<action>``) at its location
    (whatever its kind)."""
    action = permission.removeprefix("leads.")
    return record_rule(lambda customer_id, **_: commands.load_lead(context(), customer_id, action))


def own_rule(permission: str):
    """``customer_rule(action=…)`` with the action the operation's permission names (``customers.modify``,
    ``leads.modify``: ``modify``), checked as the record's own right (customers.* or leads.* by its kind)."""
    return customer_rule(action=permission.split(".", 1)[1])


# A company-wide catalog of this service (tags, custom fields): its views, wired to this service's
# session, command context and ETags (see vigil_shared.catalog).
catalog_routes = partial(register_catalog, session=request_session, context=context, etag_headers=etag_headers)


def archive_rule(permission: str):
    """``loaded()`` is the URL's record, locked, after checking ``permission`` (archive, unarchive) at its
    location; unlike a write rule it does not refuse an archived record."""
    return record_rule(lambda customer_id, **_: commands.load_customer_for(context(), customer_id, permission))
