"""Every change the billing service makes, one command each, from a view, a task or a script alike.

A command takes a :class:`~vigil_shared.commands.Context`, checks the caller's rights on what it
changes (``ctx.require``) and the version the caller read (``ctx.check_version``), calls the domain
modules and commits once (:func:`~vigil_shared.commands.command`). The ``load_*`` functions find a
record and check the caller's right at its location; the request layer runs them before parsing a
body. A customer's location is read from the replica (the customer service is asked once when the
replica does not know it yet, and always before a record is attached to a customer). A loader given
a write permission refuses a customer archived (409, :mod:`vigil_shared.archived`): once here for
every route, as the replica knows it from the archive saga's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from vigil_shared.archived import refuse_if_archived
from vigil_shared.commands import Context, command, ensure_version
from vigil_shared.db import utcnow
from vigil_shared.errors import Problem, not_found, validation_problem

from . import archiving, charging, company, customer_client, invoices, methods, payments, processor, rates, recurring
from . import customers_replica as replica
from .models import (
    BillingMethod,
    BillingSettings,
    Invoice,
    KnownCustomer,
    Payment,
    Rate,
    RateAssignment,
    RecurringInvoice,
    ScheduledPayment,
)

CATALOGS_MANAGE = "catalogs.manage"


def lookup(customer_id: int):
    # resolved at call time so tests can stand in for the customer service
    return customer_client.lookup_customer(customer_id)


def no_such_customer(field: str = "customer_id"):
    return validation_problem({field: ["No such customer."]})


def live_customer(ctx: Context, customer_id: int, field: str = "customer_id") -> KnownCustomer:
    """The customer's replica entry, confirmed by the customer service; 422 when there is no live customer."""
    known = replica.resolve(ctx.session, customer_id, lookup, confirm=True)
    if known is None:
        raise no_such_customer(field)
    return known


def customer_location(ctx: Context, customer_id: int) -> int | None:
    known = replica.resolve(ctx.session, customer_id, lookup)
    return None if known is None else known.location_id


def _is_write(permission: str) -> bool:
    return not permission.endswith(".view")


def refuse_archived(ctx: Context, customer_id: int, permission: str, known: KnownCustomer | None = None) -> None:
    """409 for a write (``permission`` is not a view) under an archived customer."""
    if _is_write(permission):
        archived = known.archived if known is not None else replica.is_archived(ctx.session, customer_id)
        refuse_if_archived(archived, customer_id)


def load_customer_location(ctx: Context, customer_id: int, permission: str) -> int | None:
    """The customer's location, 404 unless the caller holds ``permission`` there (an unknown customer
    passes: its lists are empty)."""
    location_id = customer_location(ctx, customer_id)
    if location_id is not None:
        ctx.require_on(permission, location_id, "customer")
    return location_id


@command
def load_customer(ctx: Context, customer_id: int, permission: str) -> KnownCustomer:
    """The known, live customer (404 for one billing has never heard of nor can confirm, and for one
    outside the caller's ``permission``: :meth:`~vigil_shared.commands.Context.require_on`). Commits
    what the customer service said."""
    known = replica.resolve(ctx.session, customer_id, lookup)
    if known is None or known.location_id is None:
        ctx.require(permission)
        raise not_found("customer")
    ctx.require_on(permission, known.location_id, "customer")
    refuse_archived(ctx, customer_id, permission, known)
    return known


@command
def confirm_customer(ctx: Context, customer_id: int, permission: str) -> KnownCustomer:
    """The live customer a record is about to be attached to (422 when deleted or unknown, and the same
    422 unless the caller holds ``permission`` at its location)."""
    known = live_customer(ctx, customer_id)
    ctx.require_on(permission, known.location_id, no_such_customer())
    refuse_archived(ctx, customer_id, permission, known)
    return known


# --- company settings ------------------------------------------------------------------------------


@command
def read_settings(ctx: Context) -> BillingSettings:
    return company.settings_of(ctx.session)


@command
def update_settings(ctx: Context, changes: dict) -> BillingSettings:
    ctx.require(CATALOGS_MANAGE)
    settings = company.settings_of(ctx.session)
    ctx.check_version(settings.id, settings.version)
    return company.update_settings(ctx.session, settings, changes)


# --- the rate catalog and a customer's rate --------------------------------------------------------


@command
def create_rate(ctx: Context, data: dict) -> tuple[Rate, BillingSettings]:
    ctx.require(CATALOGS_MANAGE)
    return rates.create_rate(ctx.session, data), company.settings_of(ctx.session)


@command
def update_rate(ctx: Context, rate_id: int, changes: dict) -> tuple[Rate, BillingSettings]:
    ctx.require(CATALOGS_MANAGE)
    rate = rates.get_rate(ctx.session, rate_id)
    ctx.check_version(rate.id, rate.version)
    return rates.update_rate(ctx.session, rate, changes), company.settings_of(ctx.session)


@command
def assign_rate(ctx: Context, customer: KnownCustomer, data: dict) -> RateAssignment:
    ctx.require("billing.manage", customer.location_id)
    current = rates.assignment_of(ctx.session, customer.customer_id)
    if current is not None:
        ctx.check_version(current.customer_id, current.version)
    elif ctx.if_match and ctx.if_match.strip() != "*":
        ensure_version(ctx.if_match, customer.customer_id, 0)  # 412: it had no rate when the caller read it
    return rates.assign_rate(ctx.session, customer.customer_id, data)


@command
def clear_rate(ctx: Context, customer: KnownCustomer) -> None:
    ctx.require("billing.manage", customer.location_id)
    current = rates.assignment_of(ctx.session, customer.customer_id)
    if current is None:
        raise not_found("rate assignment")
    ctx.check_version(current.customer_id, current.version)
    rates.clear_rate(ctx.session, customer.customer_id)


Record = TypeVar("Record")


def permitted_location(ctx: Context, customer_id: int, permission: str, what: str) -> int | None:
    """The customer's location, once the caller is known to hold ``permission`` there (otherwise the 404
    an unknown ``what`` answers: ``ctx.require_on``) and, for a write, the customer is not archived
    (``refuse_archived``)."""
    location_id = customer_location(ctx, customer_id)
    ctx.require_on(permission, location_id, what)
    refuse_archived(ctx, customer_id, permission)
    return location_id


# --- invoices ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scoped(Generic[Record]):
    """A customer's record (invoice, billing method, payment) the caller may act on, with the location
    (its customer's) that decided it."""

    record: Record
    location_id: int | None


ScopedInvoice = Scoped[Invoice]
ScopedMethod = Scoped[BillingMethod]
ScopedPayment = Scoped[Payment]


def scope_of(ctx: Context, record: Record, permission: str, what: str) -> Scoped[Record]:
    """``record`` (of a customer) with its customer's location; unless the caller holds ``permission``
    there, the 404 an unknown ``what`` answers."""
    return Scoped(record, permitted_location(ctx, record.customer_id, permission, what))  # type: ignore[attr-defined]


def as_read(ctx: Context, scoped: Scoped[Record]) -> Record:
    """The record, once the caller's ``If-Match`` is known to name its current version (412 otherwise)."""
    ctx.check_version(scoped.record.id, scoped.record.version)  # type: ignore[attr-defined]
    return scoped.record


def today() -> date:
    return utcnow().date()


def load_invoice(ctx: Context, invoice_id: int, permission: str) -> ScopedInvoice:
    """404 when there is no such invoice or the caller lacks ``permission`` at its customer's location."""
    return scope_of(ctx, invoices.get_invoice(ctx.session, invoice_id), permission, "invoice")


@command
def create_invoice(ctx: Context, customer: KnownCustomer, data: dict) -> Invoice:
    ctx.require("billing.manage", customer.location_id)
    invoice = invoices.create_invoice(ctx.session, customer, data)
    if data.get("issue"):
        invoices.issue(ctx.session, ctx.outbox, invoice, today())
    return invoice


@command
def update_invoice(ctx: Context, scoped: ScopedInvoice, changes: dict) -> Invoice:
    return invoices.update_draft(ctx.session, as_read(ctx, scoped), changes)


@command
def delete_invoice(ctx: Context, scoped: ScopedInvoice) -> None:
    invoices.delete_draft(ctx.session, as_read(ctx, scoped))


@command
def issue_invoice(ctx: Context, scoped: ScopedInvoice) -> Invoice:
    return invoices.issue(ctx.session, ctx.outbox, as_read(ctx, scoped), today())


@command
def void_invoice(ctx: Context, scoped: ScopedInvoice, reason: str | None) -> Invoice:
    return invoices.void(ctx.session, ctx.outbox, as_read(ctx, scoped), reason)


def balances(ctx: Context, customer_id: int) -> tuple[int, int, int]:
    """``(balance, past_due, open invoices)`` of what is billed to the customer; its credit (payments
    left unallocated) lowers the balance (negative: the customer is in credit)."""
    owed, past_due, open_count = invoices.balances(ctx.session, customer_id, today())
    return owed - payments.credit_of(ctx.session, customer_id), past_due, open_count


# --- billing methods -------------------------------------------------------------------------------------


def load_method(ctx: Context, method_id: int, permission: str) -> ScopedMethod:
    """404 when there is no such billing method or the caller lacks ``permission`` where its customer is."""
    return scope_of(ctx, methods.get_method(ctx.session, method_id), permission, "billing method")


@command
def add_method(ctx: Context, customer: KnownCustomer, data: dict) -> BillingMethod:
    ctx.require("billing_methods.manage", customer.location_id)
    return methods.add_method(ctx.session, processor.processor(), customer.customer_id, data, today())


@command
def make_default_method(ctx: Context, scoped: ScopedMethod) -> BillingMethod:
    return methods.make_default(ctx.session, as_read(ctx, scoped))


@command
def remove_method(ctx: Context, scoped: ScopedMethod) -> None:
    methods.remove_method(ctx.session, as_read(ctx, scoped))


# --- payments ----------------------------------------------------------------------------------------------


def load_payment(ctx: Context, payment_id: int, permission: str) -> ScopedPayment:
    return scope_of(ctx, payments.get_payment(ctx.session, payment_id), permission, "payment")


@command
def create_payment(ctx: Context, customer: KnownCustomer, data: dict) -> Payment:
    """Cash and checks are received at once; a card or bank account is charged by the worker after the commit."""
    ctx.require("payments.create", customer.location_id)
    payment = payments.create_payment(ctx.session, ctx.outbox, customer, data)
    if payment.status == "pending":
        payment_id = payment.id
        ctx.after_commit(lambda: charging.request_charge(payment_id))
    return payment


def refund_payment(ctx: Context, scoped: ScopedPayment, data: dict) -> Payment:
    """Refunds through the processor. Not one transaction when the processor refuses or its answer is
    lost: the refusal is committed (it ends the attempt, so the next one sends a new idempotency key) and
    then answered 409; the lost attempt's amount is committed (the next attempt must ask for it again,
    under the same key) and then answered 503."""
    refused = _refund(ctx, scoped, data)
    if refused is not None:
        raise refused
    return scoped.record


@command
def _refund(ctx: Context, scoped: ScopedPayment, data: dict) -> Problem | None:
    payment = as_read(ctx, scoped)
    try:
        payments.refund(ctx.session, ctx.outbox, processor.processor(), payment, data.get("amount"), data.get("reason"))
    except payments.RefundRefused as refusal:
        payments.count_refusal(ctx.session, payment.id)
        return refusal.problem
    except payments.RefundUnknown as unknown:
        payments.keep_pending(ctx.session, payment.id, unknown.amount)
        return unknown.problem
    return None


# --- recurring invoices and scheduled payments (and the archive hooks: list, cancel idempotently) ---------


def load_recurring(ctx: Context, recurring_id: int, permission: str) -> RecurringInvoice:
    template = recurring.get_recurring(ctx.session, recurring_id)
    permitted_location(ctx, template.customer_id, permission, "recurring invoice")
    return template


def load_scheduled(ctx: Context, scheduled_id: int, permission: str) -> ScheduledPayment:
    scheduled = recurring.get_scheduled(ctx.session, scheduled_id)
    permitted_location(ctx, scheduled.customer_id, permission, "scheduled payment")
    return scheduled


@command
def create_recurring(ctx: Context, customer: KnownCustomer, data: dict) -> RecurringInvoice:
    ctx.require("billing.manage", customer.location_id)
    return recurring.create_recurring(ctx.session, customer, data, today())


@command
def cancel_recurring(ctx: Context, template: RecurringInvoice) -> RecurringInvoice:
    ctx.check_version(template.id, template.version)
    return recurring.cancel_recurring(ctx.session, template)


@command
def create_scheduled(ctx: Context, customer: KnownCustomer, data: dict) -> ScheduledPayment:
    ctx.require("payments.create", customer.location_id)
    return recurring.create_scheduled(ctx.session, customer, data, today())


@command
def cancel_scheduled(ctx: Context, scheduled: ScheduledPayment) -> ScheduledPayment:
    ctx.check_version(scheduled.id, scheduled.version)
    return recurring.cancel_scheduled(ctx.session, scheduled)


def request_run_due(ctx: Context, day: date | None) -> None:
    """Asks the worker to run the due job now (for ``day``); the beat runs it every minute anyway.

    ``day`` is today or a day gone by (422 otherwise). The job charges every scheduled payment due by
    ``day`` and issues every recurring period up to it, and this needs ``ops.manage`` alone: for a day
    still ahead, an operator holding no billing right charged customers' cards and billed them early
    ("nobody gains what they do not hold"). A day gone by finds only what today's run finds anyway."""
    ctx.require("ops.manage")
    if day is not None and day > today():
        raise validation_problem({"date": ["The due job runs for today or an earlier day, never a day still ahead."]})
    charging.request_run_due(day.isoformat() if day else None)


def archive_items(ctx: Context, customer_ids: list[int]) -> list[dict]:
    """What archiving these customers would cancel here; 403 unless the caller may archive each one."""
    for customer_id in customer_ids:
        ctx.require("customers.archive", customer_location(ctx, customer_id))
    return archiving.archive_items(ctx.session, customer_ids)
