"""Every change the credit service makes, one command each (:mod:`vigil_shared.commands`).

The ``load_*`` functions find what the URL names and check the caller's right at the customer's
office location, which the customer service tells at request time: the request layer runs them
before parsing a body. Given a write permission, they refuse an archived customer (409,
:mod:`vigil_shared.archived`): credit takes part in archiving read-only, once here for every route.
"""

from __future__ import annotations

from typing import Any

from vigil_shared.archived import refuse_if_archived
from vigil_shared.commands import Context, command
from vigil_shared.errors import not_found
from vigil_shared.service import current_runtime

from . import checks, customer_client, prechecks
from .checks import CustomerRef
from .customer_client import CustomerGone, CustomerUnavailable
from .models import CreditCheck, CreditSettings, PreCheck

CATALOGS_MANAGE = "catalogs.manage"


def locate(ctx: Context, customer_id: int, what: str = "customer") -> CustomerRef:
    """The customer and its office location, asked of the customer service (404 naming ``what``, 503)."""
    try:
        facts = customer_client.customer_facts(current_runtime().settings, customer_id, ctx.request_id)
    except CustomerGone:
        raise not_found(what) from None
    except CustomerUnavailable:
        raise customer_client.unavailable() from None
    return CustomerRef(customer_id, facts.location_id, facts.archived)


def _checked(ctx: Context, customer: CustomerRef, permission: str, what: str) -> CustomerRef:
    """Unless the caller holds ``permission`` at the customer's location, the 404 an unknown ``what``
    answers (``ctx.require_on``); 409 for a write under an archived one."""
    ctx.require_on(permission, customer.location_id, what)
    if not permission.endswith(".view"):
        refuse_if_archived(customer.archived, customer.customer_id)
    return customer


def load_customer(ctx: Context, customer_id: int, permission: str) -> CustomerRef:
    """The customer after checking ``permission`` at its location (404 for an unknown or hidden one) and,
    for a write, that it is not archived (409)."""
    return _checked(ctx, locate(ctx, customer_id), permission, "customer")


def load_check(ctx: Context, check_id: int, permission: str) -> tuple[CreditCheck, CustomerRef]:
    """The check after checking ``permission`` at its customer's location (404 for an unknown or hidden one)."""
    customers: dict[int, CustomerRef] = {}

    def read(locked: bool) -> CreditCheck:
        return checks.get_check(ctx.session, check_id, for_update=locked)

    def check_scope(check: CreditCheck) -> None:  # its customer gone: like an unknown check
        if check.customer_id not in customers:
            customers[check.customer_id] = locate(ctx, check.customer_id, "credit check")
        _checked(ctx, customers[check.customer_id], permission, "credit check")

    # the scope is checked before the row is locked (Context.load_on): an outsider never waits on it
    found = ctx.load_on(read, check_scope, lock=permission != "credit.view")
    return found, customers[found.customer_id]


@command
def request_check(ctx: Context, customer: CustomerRef, data: dict[str, Any]) -> CreditCheck:
    ctx.require("credit.create", customer.location_id)
    return checks.request_pull(ctx, customer, data)


@command
def enter_manual_score(ctx: Context, customer: CustomerRef, data: dict[str, Any]) -> CreditCheck:
    ctx.require("credit.create", customer.location_id)
    return checks.record_manual(ctx, customer, data)


@command
def apply_check(ctx: Context, check: CreditCheck, customer: CustomerRef) -> CreditCheck:
    ctx.require("credit.apply", customer.location_id)
    return checks.apply(ctx, check, shows_result=ctx.can("credit.view", customer.location_id))


@command
def skip_check(ctx: Context, check: CreditCheck, customer: CustomerRef) -> CreditCheck:
    ctx.require("credit.apply", customer.location_id)
    return checks.skip(ctx, check)


@command
def read_settings(ctx: Context) -> CreditSettings:
    """The company's credit settings (created with the defaults on first read)."""
    return checks.get_settings(ctx.session)


@command
def update_settings(ctx: Context, changes: dict[str, Any]) -> CreditSettings:
    ctx.require(CATALOGS_MANAGE)
    settings = checks.get_settings(ctx.session)
    ctx.check_version(settings.id, settings.version)
    return checks.update_settings(ctx.session, changes)


@command
def refresh_precheck(ctx: Context, customer: CustomerRef) -> PreCheck:
    """Runs the ADT PreCheck again (in the background)."""
    ctx.require("credit.create", customer.location_id)
    return prechecks.request(ctx.session, ctx.outbox, customer.customer_id, "refresh", ctx.identity.username)
