"""Every change the customer service makes, one command each, from a view, a task or a script alike.

A command takes the service's :class:`~vigil_customer.customers.Context`, checks the caller's
rights (the record operations in :mod:`vigil_customer.customers` check them field by field;
``ctx.require`` elsewhere) and the version the caller read (``ctx.check_version``), calls the
domain modules, and commits once with its history and events
(:func:`~vigil_shared.commands.command`). The ``load_*`` functions find a record and check the
caller's right at its location (outside it, the 404 of an unknown id:
:meth:`~vigil_shared.commands.Context.require_on`): the request layer runs them before parsing a body;
a task runs them before calling a command.

Writes lock the record's row before the command runs (``load_customer``/``load_customer_tab`` with
a write right), so concurrent writes to one record, a tab's included (two call-order moves, say),
run one after the other and each sees the version the previous one left. The caller's scope is
checked on an unlocked read first (``Context.load_on``): a caller outside it gets the unknown-id 404
at once, never after waiting behind another writer's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from vigil_shared.archived import refuse_if_archived
from vigil_shared.commands import catalog_commands, command, forbidden, refuse_on_record
from vigil_shared.customer_replica import CREDIT_SUBJECT_FIELDS, CREDIT_SUBJECT_PERMISSIONS
from vigil_shared.db import Database
from vigil_shared.errors import validation_problem
from vigil_shared.identity import Identity

from . import archiving, contacts, custom_fields, customers, files, history, monitoring, notes, record, tags
from .access import base_permission
from .customers import Context
from .models import Contact, Customer, CustomerFile, MonitoringCompany, Note, Tag

CATALOGS_MANAGE = "catalogs.manage"
# the record's own actions that change it (its row is locked from the first read)
WRITES = frozenset({"modify", "delete"})


# --- loading a record the caller may act on ---------------------------------------------------------
# Every write to a record or to anything under it loads it here with a write right, so this is
# where an archived customer is refused (409, vigil_shared.archived), once for every route.


def _writable(customer: Customer) -> Customer:
    refuse_if_archived(customer.archived_at is not None, customer.id)
    return customer


def _load(
    ctx: Context, customer_id: int, permission_of: Callable[[Customer], str], *, lock: bool, key_only: bool = False
) -> Customer:
    """The record once the caller holds ``permission_of(record)`` at its location (404 otherwise, like an
    unknown id), checked on an unlocked read before a write locks the row (``Context.load_on``)."""

    def read(locked: bool) -> Customer:
        return customers.get_customer(ctx.session, customer_id, for_update=locked, key_only=key_only and not locked)

    def check(customer: Customer) -> None:
        ctx.require_on(permission_of(customer), customer.location_id, "customer")

    return ctx.load_on(read, check, lock=lock)


def load_customer(ctx: Context, customer_id: int, action: str) -> Customer:
    """The record (404), after checking the caller's ``view``/``modify``/``delete`` right for its kind
    (``customers.*`` or ``leads.*``) at its location (404 otherwise, like an unknown id)."""
    customer = _load(ctx, customer_id, lambda c: base_permission(c.kind, action), lock=action in WRITES)
    return _writable(customer) if action in WRITES else customer


def load_lead(ctx: Context, customer_id: int, action: str) -> Customer:
    """The record after checking ``leads.<action>`` at its location (404), whatever its kind: the views
    under ``/leads`` answer 404 for a customer once the body is read."""
    return _load(ctx, customer_id, lambda _: f"leads.{action}", lock=action in WRITES)


def load_customer_tab(ctx: Context, customer_id: int, permission: str) -> Customer:
    """The record for a tab (notes, contacts, files…): 404 without ``permission`` at its location."""
    writing = permission.endswith(".modify")
    customer = _load(ctx, customer_id, lambda _: permission, lock=writing, key_only=True)
    return customer if permission.endswith(".view") else _writable(customer)


def load_customer_for(ctx: Context, customer_id: int, permission: str) -> Customer:
    """The record for an action of its own (``customers.archive``, ``customers.unarchive``): 404 without
    ``permission`` at its location; the row is locked, and an archived record is not refused here."""
    return _load(ctx, customer_id, lambda _: permission, lock=not permission.endswith(".view"))


def read_emergency_contacts(identity: Identity, customer_id: int, db: Database) -> list[dict]:
    """The record's emergency contacts as the technician lookup shows them: 404 without
    ``contacts.view`` at its location (as ``load_customer_tab``: :func:`refuse_on_record`, the rule of
    ``Context.require_on``), read with the record in one query, outside any transaction
    (:meth:`Database.read`: no liveness probe, ``BEGIN`` or ``ROLLBACK``, which cost more than the query
    on the request session). No command context: building its request session was a few percent of
    the call."""
    location_id, listed = db.read(lambda conn: contacts.on_site(conn, customer_id))
    refuse_on_record(identity, "contacts.view", location_id, "customer")
    return listed


# --- customers and leads ----------------------------------------------------------------------------


@command
def create_customer(
    ctx: Context, data: dict, *, allow_duplicates: bool = False, run_precheck: bool | None = None
) -> Customer:
    """``run_precheck``: None runs the ADT PreCheck when the monitoring company is ADT (the seed's default)."""
    return customers.create(ctx, data, allow_duplicates=allow_duplicates, run_precheck=run_precheck)


@command
def update_customer(ctx: Context, customer: Customer, changes: dict) -> Customer:
    ctx.check_version(customer.id, customer.version)
    customers.update(ctx, customer, changes)
    return customer


@command
def convert_lead(ctx: Context, lead: Customer, data: dict) -> Customer:
    ctx.check_version(lead.id, lead.version)
    return customers.convert(ctx, lead, data)


@command
def duplicate_customer(ctx: Context, source: Customer, overrides: dict) -> Customer:
    return customers.duplicate(ctx, source, overrides)


@command
def delete_customer(ctx: Context, customer: Customer) -> None:
    """Deletes the record and everything attached; its stored files go once that is committed."""
    ctx.check_version(customer.id, customer.version)
    keys = customers.delete(ctx, customer)
    if keys:
        ctx.after_commit(lambda: files.remove_blobs(keys))


def require_modify(ctx: Context, customer: Customer) -> None:
    """404 unless the caller may modify the record where it is (a read that serves an edit form)."""
    ctx.require_on(base_permission(customer.kind, "modify"), customer.location_id, "customer")


# --- archiving ----------------------------------------------------------------------------------------


@command
def archive_customer(ctx: Context, customer: Customer) -> Any:
    """Archives the customer and its unarchived sub-customers; the operation finishes the saga."""
    return archiving.archive(ctx, customer)


@command
def unarchive_customer(ctx: Context, customer: Customer, scope: archiving.Scope, restore_cancelled: bool) -> Any:
    return archiving.unarchive(ctx, customer, scope, restore_cancelled)


# --- what other services read and change -------------------------------------------------------------

SUBJECT_PERMISSIONS = CREDIT_SUBJECT_PERMISSIONS  # the credit-subject read: vigil_shared.customer_replica
CREDIT_SERVICE = "service:credit"  # the one caller of the subject read (service_identity("credit"))


@command
def read_credit_subject(ctx: Context, customer_id: int) -> dict:
    """The subject of a credit pull, unmasked, for the credit service only; the read is recorded in the history."""
    if not ctx.identity.is_service or ctx.identity.subject != CREDIT_SERVICE:
        raise forbidden("service")
    for permission in SUBJECT_PERMISSIONS:
        ctx.require(permission)
    customer = customers.get_customer(ctx.session, customer_id)
    subject = {name: record.read(customer, name, ctx.cipher) for name in CREDIT_SUBJECT_FIELDS}
    if subject["birthdate"] is not None:
        subject["birthdate"] = subject["birthdate"].isoformat()
    history.record(
        ctx.session,
        ctx.actor,
        customer.id,
        "credit_subject_read",
        new=", ".join(name for name in ("ssn", "birthdate") if subject[name] is not None) or "none",
    )
    return subject


# --- notes, contacts, tags and files of a record -----------------------------------------------------


_Versioned = TypeVar("_Versioned", Note, Contact, MonitoringCompany)


def _as_read(ctx: Context, record: _Versioned) -> _Versioned:
    """The record, once the version the caller read (``If-Match``) is found to be the stored one."""
    ctx.check_version(record.id, record.version)
    return record


@command
def add_note(ctx: Context, customer: Customer, data: dict) -> Note:
    return notes.create_note(ctx.session, ctx.actor, customer.id, data)


@command
def update_note(ctx: Context, customer: Customer, note_id: int, changes: dict) -> Note:
    note = _as_read(ctx, notes.get_note(ctx.session, customer.id, note_id))
    notes.update_note(ctx.session, ctx.actor, note, changes)
    return note


@command
def delete_note(ctx: Context, customer: Customer, note_id: int) -> None:
    note = _as_read(ctx, notes.get_note(ctx.session, customer.id, note_id))
    notes.delete_note(ctx.session, ctx.actor, note)


@command
def add_contact(ctx: Context, customer: Customer, data: dict) -> Contact:
    return contacts.create_contact(ctx.session, ctx.actor, ctx.cipher, customer, data)


@command
def update_contact(ctx: Context, customer: Customer, contact_id: int, changes: dict) -> Contact:
    """Changes a contact; changing a saved passcode needs ``confidential.installation_codes.modify``."""
    contact = _as_read(ctx, contacts.get_contact(ctx.session, customer.id, contact_id))
    contacts.update_contact(ctx.session, ctx.actor, ctx.cipher, ctx.identity, customer, contact, changes)
    return contact


@command
def delete_contact(ctx: Context, customer: Customer, contact_id: int) -> None:
    contact = _as_read(ctx, contacts.get_contact(ctx.session, customer.id, contact_id))
    contacts.delete_contact(ctx.session, ctx.actor, contact)


@command
def apply_tag(
    ctx: Context, customer: Customer, *, tag_id: int | None = None, name: str | None = None
) -> tuple[Tag, bool]:
    """Puts a catalog tag (by id, or by name) on the record: ``(tag, newly applied)``."""
    if tag_id is not None:
        tag = tags.get_tag(ctx.session, tag_id)
    elif name is not None:
        tag = tags.find_by_name(ctx.session, name)
    else:
        raise validation_problem({"tag_id": ["Send either tag_id or name."]})
    return tag, tags.apply(ctx.session, ctx.actor, customer.id, tag)


@command
def remove_tag(ctx: Context, customer: Customer, tag_id: int) -> None:
    tags.remove(ctx.session, ctx.actor, customer.id, tag_id)


@command
def add_file(ctx: Context, customer: Customer, upload, description: str | None = None) -> CustomerFile:
    return files.store_upload(ctx.session, ctx.actor, customer.id, upload, description)


@command
def delete_file(ctx: Context, customer: Customer, file_id: int, version: int) -> None:
    """Removes the file's record; its bytes go once that is committed. A stored file never changes:
    ``version`` is the one every file has."""
    item = files.get_file(ctx.session, customer.id, file_id)
    ctx.check_version(item.id, version)
    key = files.delete_file(ctx.session, ctx.actor, item)
    ctx.after_commit(lambda: files.remove_blobs([key]))


# --- company-wide catalogs: tags, custom fields, monitoring companies ---------------------------------


@command
def create_monitoring_company(ctx: Context, data: dict) -> MonitoringCompany:
    ctx.require(CATALOGS_MANAGE)
    return monitoring.create_company(ctx.session, data)


@command
def update_monitoring_company(ctx: Context, company_id: int, changes: dict) -> MonitoringCompany:
    ctx.require(CATALOGS_MANAGE)
    company = _as_read(ctx, monitoring.get_company(ctx.session, company_id))
    return monitoring.update_company(ctx.session, company, changes)


create_tag, update_tag, delete_tag = catalog_commands(
    "tag", CATALOGS_MANAGE, tags.get_tag, tags.create_tag, tags.update_tag, tags.delete_tag
)
create_custom_field, update_custom_field, delete_custom_field = catalog_commands(
    "custom_field",
    CATALOGS_MANAGE,
    custom_fields.get_definition,
    custom_fields.create_definition,
    custom_fields.update_definition,
    custom_fields.delete_definition,
)
