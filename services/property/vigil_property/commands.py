"""Every change the property service makes, one command each, from a view, a task or a script alike.

A command takes a :class:`~vigil_shared.commands.Context`, checks the caller's rights on what it
changes (``ctx.require``) and the version the caller read (``ctx.check_version``), calls the
domain modules (which keep the records' own rules and write history and events), and commits once
(:func:`~vigil_shared.commands.command`). The ``load_*`` functions find a record and check the
caller's right at its location: the request layer runs them before parsing a body; a task runs them
before calling a command.

A property's location is its customer's, read from the replica (the customer service is asked once
when the replica does not know it yet, and always before a record is attached to a customer). A
record in a location where the caller lacks the permission answers 403, as the offices expect;
lists are filtered instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vigil_shared.archived import refuse_if_archived
from vigil_shared.commands import Context, catalog_commands, command, refuse_on_record
from vigil_shared.crypto import FieldCipher
from vigil_shared.db import Database, utcnow
from vigil_shared.errors import FORBIDDEN, Problem, not_found
from vigil_shared.identity import Identity

from . import appointments, archiving, customer_client, equipment, monitoring, pins, properties, systems, tech
from . import customers_replica as replica
from .history import Actor
from .models import Appointment, Equipment, KnownCustomer, Property, Signal, System

CODES_VIEW = "confidential.installation_codes.view"
CODES_MODIFY = "confidential.installation_codes.modify"
CATALOGS_MANAGE = "catalogs.manage"


@dataclass(frozen=True)
class Scoped:
    """A property the caller may act on, with the location that decided it."""

    property: Property
    location_id: int | None


Child = TypeVar("Child", System, Equipment)


def as_read(ctx: Context, get: Callable[[Session, int, int], Child], scoped: Scoped, child_id: int) -> Child:
    """The property's system or equipment ``child_id`` (``get``), once the caller's ``If-Match`` is known
    to name its current version (412 otherwise)."""
    found = get(ctx.session, scoped.property.id, child_id)
    ctx.check_version(found.id, found.row_version)
    return found


def actor(ctx: Context) -> Actor:
    return Actor.of(ctx.identity, ctx.request_id)


def lookup(customer_id: int):
    # resolved at call time so tests can stand in for the customer service
    return customer_client.lookup_customer(customer_id)


# --- loading a record the caller may act on ---------------------------------------------------------
# Every write goes through one of these loaders with a write permission: this is where a write under
# an archived customer is refused (409, vigil_shared.archived), once for every route.


def _is_write(*permissions: str) -> bool:
    return any(not name.endswith(".view") for name in permissions)


def refuse_archived(ctx: Context, customer_id: int) -> None:
    refuse_if_archived(replica.is_archived(ctx.session, customer_id), customer_id)


def confirmed_customer(ctx: Context, customer_id: int, field: str = "customer_id") -> KnownCustomer:
    """The customer's replica entry, confirmed by the customer service; 422 naming ``field`` when there is
    no such (live) customer. For writes that attach a record to the customer (create, transfer): the replica
    may not have heard of a deletion that has already answered 204. Its archived check comes after the
    caller's rights are checked (:func:`confirm_customer`, :func:`transfer_property`)."""
    known = replica.resolve(ctx.session, customer_id, lookup, confirm=True)
    if known is None:
        raise properties.no_such_customer(field)
    return known


def customer_location(ctx: Context, customer_id: int) -> int | None:
    known = replica.resolve(ctx.session, customer_id, lookup)
    return None if known is None else known.location_id


def load_property(ctx: Context, property_id: int, permission: str, *more: str, what: str = "property") -> Scoped:
    """404 when there is no such property or the caller lacks one of the permissions at its location."""
    found, location_id = properties.property_with_location(ctx.session, property_id)
    if location_id is None:  # not replicated with its location yet: ask the customer service once
        location_id = customer_location(ctx, found.customer_id)
    for name in (permission, *more):
        ctx.require_on(name, location_id, what)
    if _is_write(permission, *more):
        refuse_archived(ctx, found.customer_id)
    return Scoped(found, location_id)


def read_property(
    db: Database, identity: Identity, property_id: int, permission: str, context: Callable[[], Context]
) -> Scoped:
    """:func:`load_property` for the property read (GET): the same 404s, the record as the plain row
    :func:`properties.read_property` reads (what a read shows, without an ORM entity, a session or a
    transaction); ``context`` is built only for a property whose location the replica does not know."""
    found, location_id = properties.read_property(db, property_id)
    if location_id is None:  # not replicated with its location yet: ask the customer service once
        location_id = customer_location(context(), found.customer_id)
    refuse_on_record(identity, permission, location_id, "property")
    return Scoped(found, location_id)  # type: ignore[arg-type]  # a row with the attributes a read shows


def load_appointment(ctx: Context, appointment_id: int, permission: str) -> tuple[Appointment, Scoped]:
    """The appointment and its property, after checking ``permission`` at the property's location (404
    either way, like an unknown appointment)."""
    found = appointments.get_appointment(ctx.session, appointment_id)
    return found, load_property(ctx, found.property_id, permission, what="appointment")


def load_customer_location(ctx: Context, customer_id: int, permission: str) -> int | None:
    """The customer's location: the same 404 for an unknown customer and for one the caller does not hold
    ``permission`` for where it is."""
    known = replica.resolve(ctx.session, customer_id, lookup)
    if known is None:
        raise not_found("customer")
    location_id = known.location_id
    ctx.require_on(permission, location_id, "customer")
    if _is_write(permission):
        refuse_archived(ctx, customer_id)
    return location_id


def archive_items(ctx: Context, customer_ids: list[int]) -> list[dict]:
    """What archiving these customers would cancel here; 403 unless the caller may archive each one."""
    for customer_id in customer_ids:
        location_id = customer_location(ctx, customer_id)
        ctx.require("customers.archive", location_id)
    return archiving.archive_items(ctx.session, customer_ids)


@command
def confirm_customer(ctx: Context, customer_id: int, permission: str) -> KnownCustomer:
    """The live customer a record is about to be attached to (422 when deleted or unknown, and the same 422
    unless the caller holds ``permission`` at its location). Commits what the customer service said, which also
    releases SQLite's write lock before ``@idempotent`` records its key in a transaction of its own."""
    known = confirmed_customer(ctx, customer_id)
    ctx.require_on(permission, known.location_id, properties.no_such_customer())
    refuse_if_archived(known.archived, customer_id)
    return known


# --- properties -------------------------------------------------------------------------------------


def _refuse_unmasking_move(ctx: Context, source_location: int | None, target_location: int | None) -> None:
    """403 when moving a record from ``source_location`` to ``target_location`` would show the caller
    codes (the PIN, panel passwords) masked for them where it is now: an operation never reveals a
    value the caller cannot see at its source, and dropping the codes would lose the customer's data."""
    if not ctx.can(CODES_VIEW, source_location) and ctx.can(CODES_VIEW, target_location):
        raise Problem(
            403,
            "Moving this property would show you its PIN and panel passwords, masked for you "
            "where it is now. Someone who may see them there can move it.",
            type=FORBIDDEN,
            permission=CODES_VIEW,
            errors={"to_customer_id": [f"Needs the '{CODES_VIEW}' permission where the property is now."]},
        )


@command
def create_property(ctx: Context, customer: KnownCustomer, data: dict) -> Scoped:
    """Adds a property to a live customer (see :func:`confirm_customer`)."""
    ctx.require("properties.create", customer.location_id)
    created = properties.create_property(ctx.session, ctx.outbox, ctx.cipher, customer.customer_id, data, actor(ctx))
    return Scoped(created, customer.location_id)


@command
def update_property(ctx: Context, scoped: Scoped, changes: dict) -> Scoped:
    """Changes some fields; changing the PIN needs ``confidential.installation_codes.modify`` there."""
    ctx.check_version(scoped.property.id, scoped.property.version)
    if "pin" in changes:
        ctx.require(CODES_MODIFY, scoped.location_id, field="pin")
    properties.update_property(
        ctx.session,
        ctx.outbox,
        ctx.cipher,
        scoped.property,
        changes,
        actor(ctx),
        sees_pin=ctx.can(CODES_VIEW, scoped.location_id),
    )
    return scoped


@command
def set_active(ctx: Context, scoped: Scoped, active: bool, reason: str | None = None) -> Scoped:
    ctx.check_version(scoped.property.id, scoped.property.version)
    properties.set_active(ctx.session, ctx.outbox, scoped.property, active, actor(ctx), reason)
    return scoped


@command
def transfer_property(ctx: Context, scoped: Scoped, to_customer_id: int, reason: str | None = None) -> Scoped:
    """Moves the property, with everything attached, to another (live) customer: the new-homeowner case.

    Needs ``properties.modify`` at both customers' locations: a receiving customer where the caller lacks
    it answers the 422 of an unknown one, archived or not (which ids are customers there is not theirs to
    learn), as a property created under it does. A transfer that would show the caller codes masked for
    them where the property is now is refused (403). A property linked to a central station is unlinked
    when the receiving customer's Monitored By is not the giver's.
    """
    ctx.check_version(scoped.property.id, scoped.property.version)
    properties.ensure_editable(scoped.property)
    target = confirmed_customer(ctx, to_customer_id, field="to_customer_id")
    ctx.require_on("properties.modify", target.location_id, properties.no_such_customer("to_customer_id"))
    refuse_if_archived(target.archived, to_customer_id)
    _refuse_unmasking_move(ctx, scoped.location_id, target.location_id)
    giver = replica.known_customer(ctx.session, scoped.property.customer_id)
    properties.transfer_property(ctx.session, ctx.outbox, scoped.property, target.customer_id, actor(ctx), reason)
    if scoped.property.central_station is not None and (
        giver is None or giver.monitoring_company_id != target.monitoring_company_id
    ):
        # A station reaches only the properties its monitoring company monitors (monitoring.station_may_write):
        # the link its first message made under the giver's Monitored By does not pass to a customer another
        # company monitors. Unlinked, the property is matched again by the receiver's company's station.
        monitoring.link_station(ctx.session, ctx.outbox, scoped.property, None, actor(ctx))
    return Scoped(scoped.property, target.location_id)


# --- systems and the catalog of their kinds ------------------------------------------------------------


@command
def add_system(ctx: Context, scoped: Scoped, data: dict) -> System:
    return systems.add_system(ctx.session, ctx.cipher, scoped.property, data, actor(ctx))


@command
def update_system(ctx: Context, scoped: Scoped, system_id: int, changes: dict) -> System:
    """Changes a system; changing a stored password needs ``confidential.installation_codes.modify``."""
    system = as_read(ctx, systems.get_system, scoped, system_id)
    changes = systems.without_masked_echo(system, changes)
    if "password" in changes and system.password_encrypted is not None:
        ctx.require(CODES_MODIFY, scoped.location_id, field="password")
    systems.update_system(
        ctx.session,
        ctx.cipher,
        scoped.property,
        system,
        changes,
        actor(ctx),
        sees_password=ctx.can(CODES_VIEW, scoped.location_id),
    )
    return system


@command
def remove_system(ctx: Context, scoped: Scoped, system_id: int) -> None:
    system = as_read(ctx, systems.get_system, scoped, system_id)
    systems.remove_system(ctx.session, scoped.property, system, actor(ctx))


create_kind, update_kind, delete_kind = catalog_commands(
    "kind", CATALOGS_MANAGE, systems.get_kind, systems.create_kind, systems.update_kind, systems.delete_kind
)


# --- equipment ----------------------------------------------------------------------------------------


@command
def add_equipment(ctx: Context, scoped: Scoped, data: dict) -> Equipment:
    return equipment.add_equipment(ctx.session, scoped.property, data, actor(ctx))


@command
def update_equipment(ctx: Context, scoped: Scoped, equipment_id: int, changes: dict) -> Equipment:
    found = as_read(ctx, equipment.get_equipment, scoped, equipment_id)
    equipment.update_equipment(ctx.session, scoped.property, found, changes, actor(ctx))
    return found


@command
def remove_equipment(ctx: Context, scoped: Scoped, equipment_id: int) -> None:
    found = as_read(ctx, equipment.get_equipment, scoped, equipment_id)
    equipment.remove_equipment(ctx.session, scoped.property, found, actor(ctx))


# --- appointments -------------------------------------------------------------------------------------


def _clash_named_only_if_visible(ctx: Context, problem: Problem) -> Problem:
    """A double booking's 409 names the appointment it clashes with only to a caller who may view that
    appointment: a technician works for several offices, and the id of a visit in one the caller does
    not hold is not theirs to learn (the 409 itself they get: the technician is not free)."""
    clash = problem.extra.get("conflicting_appointment_id")
    if clash is not None:
        found = appointments.get_appointment(ctx.session, clash)
        location_id = properties.property_with_location(ctx.session, found.property_id)[1]
        if not ctx.can("appointments.view", location_id):
            del problem.extra["conflicting_appointment_id"]
    return problem


@command
def schedule(ctx: Context, scoped: Scoped, data: dict) -> Appointment:
    try:
        return appointments.schedule(ctx.session, scoped.property, data, actor(ctx))
    except Problem as problem:
        raise _clash_named_only_if_visible(ctx, problem) from None


@command
def reschedule(ctx: Context, scoped: Scoped, appointment: Appointment, changes: dict) -> Appointment:
    ctx.check_version(appointment.id, appointment.row_version)
    try:
        appointments.reschedule(ctx.session, scoped.property, appointment, changes, actor(ctx))
    except Problem as problem:
        raise _clash_named_only_if_visible(ctx, problem) from None
    return appointment


@command
def cancel(ctx: Context, appointment: Appointment, reason: str) -> Appointment:
    ctx.check_version(appointment.id, appointment.row_version)
    return appointments.cancel(ctx.session, appointment, reason, actor(ctx))


@command
def complete(ctx: Context, appointment: Appointment, notes: str | None = None) -> Appointment:
    ctx.check_version(appointment.id, appointment.row_version)
    return appointments.complete(ctx.session, appointment, notes, actor(ctx))


# --- the technician portal ----------------------------------------------------------------------------


TECH_PORTAL = "tech_portal.use"


def verify_on_site(
    identity: Identity,
    cipher: FieldCipher,
    context: Callable[[], Context],
    client: str,
    account_number: str,
    pin: str,
    quick: Connection,
) -> Scoped:
    """The property whose account number and PIN match (404 for either wrong, and for a property where the
    caller may not use the portal; 429 when locked or too fast).

    Not one transaction: every attempt and every wrong PIN is committed as soon as it is counted
    (see :mod:`vigil_property.tech`), so the counts stick though the answer is an error. ``quick`` is
    an autocommit connection (:meth:`Database.read_engine`): the attempt is counted and committed,
    and the candidate read, by one statement without ``BEGIN``/``COMMIT`` or liveness probe; wrong
    PINs and the clearing of a count take the request's own transactions, on ``context()``'s session
    (``context`` is called only then, and should give the same context each time: building the
    request's session was about a twentieth of a lookup's CPU in the service). The property found is
    a plain row (:data:`tech.CANDIDATE_PROPERTY_COLUMNS`).
    """
    now = utcnow()
    for attempt in (1, 2):
        try:
            candidate = tech.count_attempt_and_find(quick, client, now, account_number)
            break
        except DBAPIError as error:  # a connection the database dropped: once more on a fresh one
            quick.rollback()
            if not error.connection_invalidated or attempt == 2:
                raise
    location_id = None
    if candidate is not None:
        location_id = candidate.location_id
        if location_id is None:  # not replicated with its location yet: ask once, keep the answer
            ctx = context()
            location_id = customer_location(ctx, candidate.property.customer_id)
            ctx.session.commit()
        if not identity.can(TECH_PORTAL, location_id):
            # another office's account is no account to this caller: no lock shown, no wrong PIN counted
            # (or an outsider could lock it and learn it exists), no word on whether the PIN is right
            candidate = None
    if candidate is not None:
        tech.ensure_unlocked(candidate, now)
    if not pins.matches(cipher, candidate.property if candidate else None, pin) or candidate is None:
        if candidate is not None and (until := tech.record_failure(context().session, candidate.property.id, now)):
            raise tech.locked(until, now)
        raise tech.no_match()
    if tech.has_failures(candidate):
        tech.clear_failures(context().session, candidate)
    return Scoped(candidate.property, location_id)  # type: ignore[arg-type]  # a row with the attributes used


# --- central stations (through the gateway, which verified their signature) -------------------------

INTEGRATIONS_MANAGE = "integrations.manage"


def _station(ctx: Context) -> Actor:
    """The central station a message comes from; only the gateway sends these, on a service identity
    holding ``integrations.manage``, after verifying the station's signature."""
    if not ctx.identity.is_service:
        raise Problem(403, "Central stations send signals through their integration's signed endpoint.", type=FORBIDDEN)
    ctx.require(INTEGRATIONS_MANAGE)
    return Actor(id=ctx.identity.subject, name=ctx.identity.username, source="integration", request_id=ctx.request_id)


@command
def receive_monitoring(ctx: Context, data: dict) -> Signal:
    """A central station's signal or account status."""
    return monitoring.receive(ctx.session, ctx.outbox, ctx.cipher, data, _station(ctx))


def receive_monitoring_batch(ctx: Context, db: Database, items: list[dict]) -> list[int | None]:
    """Central stations' messages the gateway grouped; each one's property id. Signals that change no
    property are logged in one statement outside any transaction (:func:`monitoring.log_signals`),
    the others in one transaction with their history and events."""
    actor = _station(ctx)
    logged = monitoring.log_signals(db, items)
    return logged if logged is not None else _receive_monitoring_batch(ctx, items, actor)


@command
def _receive_monitoring_batch(ctx: Context, items: list[dict], actor: Actor) -> list[int | None]:
    return monitoring.receive_many(ctx.session, ctx.outbox, ctx.cipher, items, actor)


@command
def resolve_signal(ctx: Context, signal_id: int, property_id: int) -> Signal:
    """Attaches an unmatched signal to the property it belongs to (``integrations.manage`` and
    ``properties.modify`` at the property's location)."""
    ctx.require(INTEGRATIONS_MANAGE)
    scoped = load_property(ctx, property_id, "properties.modify")
    return monitoring.resolve(ctx.session, ctx.outbox, signal_id, scoped.property, actor(ctx))


def station_drift(ctx: Context, central_station: str, accounts: list[dict], monitoring_company_id: int | None) -> dict:
    """Read-only: the drift report of one central station (the gateway's periodic check asks)."""
    if not ctx.identity.is_service:
        raise Problem(403, "The drift check is run by Vigil's gateway.", type=FORBIDDEN)
    ctx.require(INTEGRATIONS_MANAGE)
    return monitoring.drift(ctx.session, central_station, accounts, monitoring_company_id)
