"""Customer and lead operations: create, change, convert, copy, delete. No HTTP in here.

Every operation checks the caller's rights on the fields it touches (``access``), validates and
normalises values (``record``), keeps the search index current (``search``), writes history
(``history``) and its event (outbox) in the caller's transaction. Nothing is changed unless
everything asked for is allowed and valid.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, cast

from sqlalchemy import Insert, Integer, Table, insert, literal_column, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, load_only, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from vigil_shared import commands
from vigil_shared.db import utcnow
from vigil_shared.errors import CONFLICT, Problem, conflict, not_found, validation_problem
from vigil_shared.messaging.contracts import CustomerConverted, CustomerCreated, CustomerDeleted, CustomerUpdated
from vigil_shared.multi_insert import insert_together

from . import custom_fields, duplicates, history, monitoring, record, registry, search, validation
from .access import (
    CONFIDENTIAL,
    CREATE_ONLY,
    CUSTOMER,
    LEAD,
    READ_ONLY,
    Access,
    base_permission,
    field_forbidden,
    fields_of,
    move_forbidden,
    section_view_permission,
    unmasked_by_move,
    visible_field,
)
from .models import Contact, Customer, CustomerFile, HistoryEntry, PropertyAccount, SearchPair, SearchTerm, messaging

DUPLICATES = "urn:vigil:problem:duplicates"
REQUIRED = record.REQUIRED
# What the cross-field rules read from the stored record.
RULE_FIELDS = {
    kind: (*required, "canceled", "cancel_date", "cancel_reason", "zip", "state") for kind, required in REQUIRED.items()
}
# Per-account identifiers and states a copy must not inherit ("Duplicate Customer").
NOT_COPIED = frozenset(f.name for f in registry.FIELDS if not f.copied)
# The values a new record starts with (flags, currency, custom field values).
STARTING_VALUES = {f.name: f.type.default for f in registry.FIELDS if f.type.default is not None}


class Context(commands.Context):
    """The shared command context (:mod:`vigil_shared.commands`); the history names its actor by
    identity and source."""

    @property
    def actor(self) -> history.Actor:
        return history.Actor(self.identity, self.source)


def get_customer(session: Session, customer_id: int, *, for_update: bool = False, key_only: bool = False) -> Customer:
    """The record, or 404. ``for_update`` locks its row until the transaction ends (PostgreSQL), so
    concurrent writes to one record run one after the other: each sees the version the previous
    one left, ``If-Match`` is judged against it, and none fails on a version it never saw.

    ``key_only`` reads the columns a tab's permission check needs (kind, location), not the whole
    record; any other attribute still loads when it is first read."""
    customer = session.get(
        Customer,
        customer_id,
        with_for_update=True if for_update else None,
        populate_existing=for_update,
        options=[load_only(Customer.id, Customer.kind, Customer.location_id, Customer.version)] if key_only else None,
    )
    if customer is None:
        raise not_found("customer")
    return customer


def touch(session: Session, customer_id: int) -> None:
    """Marks activity on the record (a note, a contact, a file…) without changing its ETag."""
    session.execute(
        sql_update(Customer)
        .where(Customer.id == customer_id)
        .values(last_activity_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# --- moving a record between offices ---------------------------------------------------------------

# Values every record starts with: holding one reveals nothing about the customer.
_DEFAULTS = {name: value for name, value in STARTING_VALUES.items() if value not in (False, "", {}, [])}
PASSCODE_VIEW = "confidential.installation_codes.view"


def _holds_value(customer: Customer, name: str) -> bool:
    if name in record.ENCRYPTED:
        return getattr(customer, record.ENCRYPTED[name]) is not None  # nothing decrypted to answer
    value = getattr(customer, name, None)
    return value not in (None, False, "", {}, []) and _DEFAULTS.get(name, object()) != value


def ensure_move_reveals_nothing(ctx: Context, customer: Customer, kind: str, location_id: int | None) -> None:
    """403 when moving ``customer`` to ``location_id`` as ``kind`` would show the caller a value
    they may not see where it is now: a field of the record, a contact's passcode, its properties'
    PINs and alarm passwords (masked by the owner's location in the property service), or a
    confidential value kept in its history (a masked SSN must not be unmasked by moving it to an
    office whose SSNs the caller may see)."""
    identity = ctx.identity
    source = Access(identity, customer.kind, customer.location_id)
    target = Access(identity, kind, location_id)
    names = [
        name
        for name in dict.fromkeys((*fields_of(customer.kind), *fields_of(kind)))
        if name not in ("custom_fields", "location_id") and _holds_value(customer, name)
    ]
    refusals = unmasked_by_move(source, target, names)

    def sees_passcodes(loc):
        return identity.can("contacts.view", loc) and identity.can(PASSCODE_VIEW, loc)

    if (
        sees_passcodes(location_id)
        and not sees_passcodes(customer.location_id)
        and ctx.session.scalar(
            select(Contact.id).where(Contact.customer_id == customer.id, Contact.passcode_enc.isnot(None)).limit(1)
        )
    ):
        refusals["contacts.passcode"] = PASSCODE_VIEW

    def sees_pins(loc):  # the property service shows PINs and alarm passwords by the owner's location
        return identity.can("properties.view", loc) and identity.can(PASSCODE_VIEW, loc)

    if (
        sees_pins(location_id)
        and not sees_pins(customer.location_id)
        and ctx.session.scalar(
            select(PropertyAccount.property_id)
            .where(PropertyAccount.customer_id == customer.id, PropertyAccount.deleted.is_(False))
            .limit(1)
        )
    ):
        refusals["properties.pin"] = PASSCODE_VIEW
    if identity.can("history.view", location_id):
        kept = ctx.session.scalars(
            select(HistoryEntry.confidential)
            .where(HistoryEntry.customer_id == customer.id, HistoryEntry.confidential.isnot(None))
            .distinct()
        )
        for category in kept:
            permission = f"confidential.{category}.view"
            seen_here = identity.can("history.view", customer.location_id) and identity.can(
                permission, customer.location_id
            )
            if identity.can(permission, location_id) and not seen_here:
                refusals.setdefault(f"history.{category}", permission)
    if refusals:
        raise move_forbidden(refusals)


# --- applying values ------------------------------------------------------------------------------


def _kind_errors(kind: str, fields) -> dict[str, list[str]]:
    allowed = set(fields_of(kind))
    errors = {}
    for name in fields:
        if name in READ_ONLY and name not in CREATE_ONLY:
            errors[name] = ["Read-only field."]
        elif name not in allowed and name not in CREATE_ONLY:
            other = "customers" if kind == LEAD else "leads"
            errors[name] = [f"Only {other} have this field."]
    return errors


def _is_mask(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("***")


def _apply(ctx: Context, customer: Customer, incoming: dict, *, creating: bool) -> list[tuple[str, Any, Any]]:
    """Validates ``incoming`` against the record and the caller's rights, then writes it.

    Returns ``(field, old, new)`` for every field that really changed. Raises 403 naming the
    fields the caller may not set, or 422 naming the invalid ones, before writing anything.
    """
    incoming = dict(incoming)
    custom_incoming = incoming.pop("custom_fields", None)
    kind = customer.kind
    # every 422 problem is gathered and reported at once; a 403 (a field the caller may not set) comes first
    errors = _kind_errors(kind, [f for f in incoming if not (creating and f in CREATE_ONLY)])
    wrong_kind = set(errors)

    state = incoming.get("state", customer.state)
    if isinstance(state, str) and state.strip():
        try:
            state = validation.normalize_state(state)
        except ValueError:
            state = None
    values, value_errors = record.normalize({k: v for k, v in incoming.items() if k not in wrong_kind}, state)
    for name, messages in value_errors.items():
        errors.setdefault(name, []).extend(messages)

    sent = [name for name in incoming if name not in wrong_kind]
    current = (
        {name: record.read(customer, name, ctx.cipher) for name in sent}
        if not creating
        else {name: None for name in sent}
    )
    access = Access(
        ctx.identity, kind, incoming.get("location_id", customer.location_id) if creating else customer.location_id
    )
    for name in list(values):
        if name in CONFIDENTIAL and record.is_masked_echo(name, values[name], current.get(name)):
            del values[name]
        elif name in CONFIDENTIAL and _is_mask(values[name]):
            errors.setdefault(name, []).append("Send the full value; a masked value cannot be saved.")
    # A saved confidential value the caller cannot see is written whatever they send (with the right to
    # change it): were the same value "no change", the answer (the same ETag, no history entry) would
    # confirm a guess of it.
    changed = {
        name: value
        for name, value in values.items()
        if value != current.get(name)
        or (name in CONFIDENTIAL and current.get(name) is not None and not access.can_see_confidential(name))
    }

    refusals = {}
    for name in incoming:
        if name in wrong_kind or (name not in values and name not in errors):
            continue  # a field of the other kind (422), or a masked echo
        if (
            name not in changed
            and name not in errors
            and access.can_view_field(name)
            and (name not in CONFIDENTIAL or access.can_see_confidential(name))
        ):
            continue  # sent back unchanged: nothing is being set
        refusal = access.write_refusal(name, creating=creating, has_saved_value=current.get(name) is not None)
        if refusal:
            refusals[name] = refusal
    if custom_incoming is not None and not access.can_record("create" if creating else "modify"):
        refusals["custom_fields"] = base_permission(kind, "create" if creating else "modify")
    if "location_id" in changed and not creating:
        target = Access(ctx.identity, kind, changed["location_id"])
        if not target.can_record("modify"):
            refusals["location_id"] = base_permission(kind, "modify")
    if refusals:
        raise field_forbidden(refusals)
    if "location_id" in changed and not creating:
        ensure_move_reveals_nothing(ctx, customer, kind, changed["location_id"])

    merged = {} if creating else {name: record.read(customer, name, ctx.cipher) for name in RULE_FIELDS[kind]}
    merged.update(values)
    for name, messages in _rule_errors(
        ctx, customer, kind, merged, changed, values, creating, reported=set(errors)
    ).items():
        errors.setdefault(name, []).extend(messages)
    for name in changed:
        if name not in current:
            current[name] = None if creating else record.read(customer, name, ctx.cipher)

    stored = dict(customer.custom_fields or {})
    if custom_incoming is not None or creating:
        merged_custom, custom_errors = custom_fields.validate_values(
            ctx.session, kind, custom_incoming or {}, stored, creating=creating
        )
        errors.update(custom_errors)
    if errors:
        raise validation_problem(errors)
    if "monitoring_company_id" in changed and not creating:
        monitoring.ensure_not_linked(ctx.session, customer.id)  # seed 001: locked while linked to a station
    if (custom_incoming is not None or creating) and merged_custom != stored:
        changed["custom_fields"] = merged_custom
        current["custom_fields"] = stored

    if "email" in changed and changed["email"] and not creating:  # create reports duplicates first
        _ensure_email_free(ctx.session, changed["email"], exclude_id=customer.id)

    # state first: phones are parsed in its country
    for name in sorted(changed, key=lambda n: n != "state"):
        record.write(customer, name, changed[name], ctx.cipher)
    record.refresh_derived(customer)
    return [(name, current.get(name), changed[name]) for name in changed]


def _rule_errors(
    ctx: Context,
    customer: Customer,
    kind: str,
    merged: dict,
    changed: dict,
    sent: dict,
    creating: bool,
    reported: set[str],
) -> dict[str, list[str]]:
    """Rules across fields: required per kind, cancellation, ZIP against a new state, parent customer.

    ``reported`` names fields whose value was already refused (not "missing" then)."""
    session = ctx.session
    errors: dict[str, list[str]] = {}
    for name in REQUIRED[kind]:
        value = merged.get(name)
        if (value is None or value == "") and name not in reported and (creating or name in sent):
            errors[name] = [record.required_message(kind)]
    if kind == CUSTOMER:
        if merged.get("canceled"):
            for name in ("cancel_date", "cancel_reason"):
                if not merged.get(name):
                    errors.setdefault(name, []).append("Required when the account is canceled.")
        else:
            for name in ("cancel_date", "cancel_reason"):
                if sent.get(name) is not None:
                    errors.setdefault(name, []).append("Only for a canceled account (set canceled to true).")
            if "canceled" in changed:
                for name in ("cancel_date", "cancel_reason"):
                    if merged.get(name) is not None:
                        changed[name] = None
                        merged[name] = None
    if "state" in changed and "zip" not in sent and merged.get("zip"):
        try:
            validation.normalize_zip(merged["zip"], merged.get("state"))
        except ValueError as exc:
            errors.setdefault("zip", []).append(f"Does not match the new state: {exc}")
    parent_id = changed.get("parent_customer_id")
    if parent_id is not None:
        errors.update(_parent_errors(ctx, customer, parent_id))
    if changed.get("monitoring_company_id") is not None:
        errors.update(monitoring.company_errors(session, changed["monitoring_company_id"]))
    return errors


def _parent_errors(ctx: Context, customer: Customer, parent_id: int) -> dict[str, list[str]]:
    """A flat two-level hierarchy: only top-level customers can be parents; and only one the caller may
    view, the others answering as an unknown id does. A sub-customer's invoices are billed to its parent,
    so a link to a customer of an office the caller does not hold would put debts on that office's
    account, and the answer would tell which ids exist there (and which are sub-customers)."""
    if customer.id is not None and parent_id == customer.id:
        return {"parent_customer_id": ["A customer cannot be its own parent."]}
    parent = ctx.session.get(Customer, parent_id)
    if (
        parent is None
        or parent.kind != CUSTOMER
        or not ctx.identity.can(base_permission(CUSTOMER, "view"), parent.location_id)
    ):
        return {"parent_customer_id": ["No such customer."]}
    if parent.parent_customer_id is not None:
        return {
            "parent_customer_id": ["That customer is itself a sub-customer; only top-level customers can be parents."]
        }
    if (
        customer.id is not None
        and ctx.session.scalar(select(Customer.id).where(Customer.parent_customer_id == customer.id).limit(1))
        is not None
    ):
        return {"parent_customer_id": ["This customer has sub-customers, so it cannot become one."]}
    return {}


def _email_in_use() -> Problem:
    return conflict("Another customer already uses this email address.", errors={"email": ["Already in use."]})


def _ensure_email_free(session: Session, email: str, exclude_id: int | None = None) -> None:
    statement = select(Customer.id).where(Customer.email_key == email.strip().lower())
    if exclude_id is not None:
        statement = statement.where(Customer.id != exclude_id)
    if session.scalar(statement) is not None:
        raise _email_in_use()


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took the email between our check and our write
        session.rollback()
        raise _email_in_use() from None
    except StaleDataError:  # another request changed the record after we read it (where rows are not locked)
        session.rollback()
        raise Problem(
            409,
            "The record was changed by another request at the same moment. Reload it and apply your change again.",
            title="Changed concurrently",
            type=CONFLICT,
        ) from None


# The record's columns by attribute name (they are the same names), with the value each takes in an
# ORM INSERT when its attribute was never set: its scalar or callable default, else NULL.
_CUSTOMERS = cast(Table, Customer.__table__)
_COLUMNS = tuple((attribute.key, attribute.columns[0]) for attribute in sa_inspect(Customer).column_attrs)


@cache
def _insert_statement(dialect: str, definitions: bool, kinds: tuple[bool, bool, bool, bool] | None) -> Insert:
    """The record's ``INSERT``, returning its id; with ``definitions``, the active custom field definitions
    as the transaction sees them (``custom_fields.assume_known``); with ``kinds``, whether another record
    holds one of its identifying values (``duplicates.held_elsewhere``)."""
    returned: list[Any] = [_CUSTOMERS.c.id]
    if definitions:
        returned.append(custom_fields.active_text(dialect))
    if kinds is not None:
        returned.append(
            duplicates.held_elsewhere(kinds, literal_column(f"{_CUSTOMERS.name}.id", Integer()))
        )  # the new row's
    return insert(_CUSTOMERS).returning(*returned)


_HISTORY, _TERMS, _PAIRS, _OUTBOX = (
    cast(Table, m.__table__) for m in (HistoryEntry, SearchTerm, SearchPair, messaging.OutboxEvent)
)
FIRST_VERSION = 1  # what the mapper's version counter gives a new row (``version_id_col``)


def _unset_value(column) -> Any:
    default = column.default
    if default is None:
        return None
    return default.arg if default.is_scalar else default.arg(None)


def _insert(
    session: Session,
    customer: Customer,
    *,
    definitions: bool = False,
    duplicates_of: duplicates.Candidate | None = None,
    taken: Callable[[], Problem] = lambda: _email_in_use(),
) -> tuple[str | None, bool]:
    """Writes the new record's row and makes ``customer`` the session's persistent object for it, as
    ``session.add(customer)`` and a flush would, with one Core ``INSERT`` of the columns that hold a
    value: the ORM's statement names all hundred columns (``NULL`` for most of a new record), and
    processing them cost a tenth of a create (bench/bench_customer_create.py). A column left out is
    one without a default, so ``NULL`` as the ORM wrote it (``kind``, the one column with a server
    default, has a Python one too and is always sent): the row is the ORM's
    (``test_a_created_records_rows_are_the_rows_the_orm_path_wrote``), and the object is left as a
    flush leaves it (``test_a_record_written_by_core_is_loaded_as_the_orm_leaves_it``).

    Returns the active custom field definitions' text with ``definitions`` (else None), and, with
    ``duplicates_of``, whether another record holds one of its identifying values (else False): see
    ``_insert_statement``. ``taken``: the problem when another record holds its email (the transaction is
    rolled back).
    """
    state = customer.__dict__  # written directly: the values become the loaded state below either way
    row: dict[str, Any] = {}
    for key, has_default, unset in _PLAN:
        if key in state:
            value = state[key]
            if value is not None or has_default:  # an explicit None is kept where a default would fill it in
                row[key] = value
        else:
            state[key] = value = unset()
            if value is not None:
                row[key] = value
    row[_VERSION] = state[_VERSION] = FIRST_VERSION
    row.pop("id", None)
    kinds = None
    if duplicates_of is not None and any(kinds := duplicates.shape(duplicates_of)):
        row.update(duplicates.parameters(duplicates_of, duplicates.PREFIX))
    else:
        kinds = None
    statement = _insert_statement(session.get_bind().dialect.name, definitions, kinds)
    try:
        state["id"], *more = session.execute(statement, row).one()
    except IntegrityError:  # another record holds the email (a concurrent request, past our check)
        session.rollback()
        raise taken() from None
    make_transient_to_detached(customer)  # its values become the loaded state, with nothing to flush
    session.add(customer)
    text = more.pop(0) if definitions else None
    return text, bool(more and more[0])


def _unset(column) -> Callable[[], Any]:
    """The value a column takes in an ORM ``INSERT`` when its attribute was never set (``_unset_value``)."""
    default = column.default
    if default is None or default.is_scalar:
        value = _unset_value(column)
        return lambda: value
    return lambda: default.arg(None)


# Per column of the record: its attribute, whether it has a default, and its value when never set.
_PLAN = tuple((key, column.default is not None, _unset(column)) for key, column in _COLUMNS)
_VERSION = Customer.version.key


def _record_changes(ctx: Context, customer: Customer, changes: list[tuple[str, Any, Any]], action: str) -> None:
    for name, old, new in changes:
        confidential = CONFIDENTIAL.get(name)
        history.record(
            ctx.session,
            ctx.actor,
            customer.id,
            action,
            field=name,
            old=old,
            new=new,
            confidential=confidential,
            cipher=ctx.cipher,
        )


# --- operations -----------------------------------------------------------------------------------


def visible_matches(matches: list[duplicates.Match], identity) -> tuple[list[dict], int]:
    """What the caller may learn of likely duplicates: ``(listed, others)``.

    A reason resting on a confidential field counts only when the caller may see that field unmasked
    on the matching record (``duplicates.REASON_FIELDS``), so an SSN
    match says nothing to a caller who sees that record's SSN masked (or not at all): a guessed
    SSN is never confirmed. Matches on records the caller may view are listed with their
    reasons; matches elsewhere are only counted, with no id, name, kind or reason.
    """
    listed, others = [], 0
    for match in matches:
        access = Access(identity, match.kind, match.location_id)
        reasons = [
            reason
            for reason in match.reasons
            if all(name not in CONFIDENTIAL or visible_field(access, name) for name in duplicates.REASON_FIELDS[reason])
        ]
        if not reasons:
            continue
        if access.can_record("view"):
            listed.append({**match.as_dict(), "reasons": reasons})
        else:
            others += 1
    return listed, others


def duplicate_problem(listed: list[dict], others: int) -> Problem:
    """409 listing the matches the caller may view, and how many others exist elsewhere."""
    errors = {"email": ["Already in use."]} if any("email" in m["reasons"] for m in listed) else None
    detail = "Possible duplicates of this record exist"
    if others:
        detail += f" ({others} in locations you may not view)"
    return Problem(
        409,
        detail + ". Check them, or repeat the request with ?allow_duplicates=true to create it anyway.",
        title="Possible duplicates",
        type=DUPLICATES,
        errors=errors,
        matches=listed,
        other_matches=others,
    )


def create(
    ctx: Context,
    data: dict,
    *,
    allow_duplicates: bool = False,
    copied_from: Customer | None = None,
    run_precheck: bool | None = False,
) -> Customer:
    """A new record. ``run_precheck``: None runs the ADT PreCheck when the monitoring company is ADT.

    The custom field definitions are the ones this process read last, unread (``custom_fields.assume_known``):
    the ``INSERT`` returns the active ones, and a refusal before it reads them, so a record is never
    created, nor a request refused, by definitions that changed meanwhile
    (``test_a_create_follows_definitions_changed_by_another_process``)."""
    assumed = custom_fields.assume_known(ctx.session)
    try:
        customer, changes, precheck, current = _written(ctx, data, allow_duplicates, run_precheck, assumed is not None)
    except Problem:
        if assumed is None or custom_fields.confirm(ctx.session):
            raise
        # the refusal may rest on old definitions (nothing is written): judge the request again by the current ones
        customer, changes, precheck, current = _written(ctx, data, allow_duplicates, run_precheck, False)
    if assumed is not None and current is not None and not custom_fields.confirm(ctx.session, current):
        changes = _custom_values_again(ctx, customer, data, changes)
    created = f"copy of #{copied_from.id}" if copied_from is not None else customer.kind
    actor = ctx.actor
    entries = history.rows_of(
        actor,
        customer.id,
        "create",
        [(None, None, created, None), *((name, old, new, CONFIDENTIAL.get(name)) for name, old, new in changes)],
        ctx.cipher,
    )
    if copied_from is not None:
        entries += history.rows_of(
            actor, copied_from.id, "duplicate", [(None, None, f"copied to #{customer.id}", None)], ctx.cipher
        )
    event = CustomerCreated(
        customer_id=customer.id,
        location_id=customer.location_id,
        kind="lead" if customer.kind == LEAD else "customer",
        precheck=precheck,
        parent_id=customer.parent_customer_id,
        monitoring_company_id=customer.monitoring_company_id,
        restricted=_restricted(customer, ["monitoring_company_id"] if customer.monitoring_company_id else []),
    )
    ctx.session.flush()  # anything the checks above left pending goes first, as before
    # The history, the search terms (a new record has no property accounts and no terms to replace)
    # and the event, in the create's transaction (outbox): one statement on PostgreSQL, the rows of
    # one executemany per table (test_a_created_records_rows_are_the_rows_the_orm_path_wrote).
    insert_together(
        ctx.session,
        [
            (_HISTORY, entries),
            *zip((_TERMS, _PAIRS), search.search_rows(customer), strict=True),
            (_OUTBOX, ctx.outbox.event_rows([event])),
        ],
    )
    return customer


def _checked(
    ctx: Context, data: dict, allow_duplicates: bool, run_precheck: bool | None
) -> tuple[Customer, list[tuple[str, Any, Any]], bool]:
    """The new record, not yet written, once the caller's rights, its values and the duplicate check allow it;
    with its changes (for the history) and whether the PreCheck runs."""
    data = dict(data)
    kind = data.pop("kind", CUSTOMER)
    location_id = data.get("location_id")
    if location_id is None:  # no office to check rights in: report every problem of the body itself
        raise validation_problem(record.payload_errors(kind, data, data))
    access = Access(ctx.identity, kind, location_id)
    if not access.can_record("create"):
        raise field_forbidden({"location_id": base_permission(kind, "create")})
    customer = Customer(kind=kind, custom_fields={}, created_by=ctx.actor.name, **STARTING_VALUES)
    changes = _apply(ctx, customer, data, creating=True)
    precheck = kind == CUSTOMER and monitoring.precheck_decision(ctx.session, customer, run_precheck, ctx.cipher)
    if customer.email_key and allow_duplicates:  # otherwise the duplicate check finds a record with it
        _ensure_email_free(ctx.session, customer.email_key)
    return customer, changes, precheck


def _written(
    ctx: Context, data: dict, allow_duplicates: bool, run_precheck: bool | None, definitions: bool
) -> tuple[Customer, list[tuple[str, Any, Any]], bool, str | None]:
    """The new record checked (``_checked``) and written, unless it is a likely duplicate the caller
    may learn of (409, rolled back). On PostgreSQL the duplicate check is the ``INSERT``'s own
    (``_insert_statement``) unless the record holds an SSN (``_CONFIDENTIAL_REASONS``): only when it
    finds another record holding one of the values is the list of matches read (a refused create then
    leaves a gap in the ids, as a failed insert always did)."""
    customer, changes, precheck = _checked(ctx, data, allow_duplicates, run_precheck)
    now = utcnow()
    customer.created_at = customer.updated_at = customer.last_activity_at = now
    candidate = None if allow_duplicates else duplicates.Candidate.of(customer)

    def refused(exclude_id: int | None) -> Problem | None:
        assert candidate is not None
        matches = duplicates.find(ctx.session, candidate, exclude_id=exclude_id)
        listed, others = visible_matches(matches, ctx.identity)
        return duplicate_problem(listed, others) if listed or others else None

    checked_by_insert = (
        candidate is not None
        and ctx.session.get_bind().dialect.name == "postgresql"
        and not _holds_confidential_reason(candidate)
    )
    if candidate is not None and not checked_by_insert and (problem := refused(None)) is not None:
        raise problem  # SQLite, or an SSN: the check first, as its own statement
    current, held = _insert(
        ctx.session,
        customer,
        definitions=definitions,
        duplicates_of=candidate if checked_by_insert else None,
        taken=lambda: (refused(None) if candidate is not None else None) or _email_in_use(),
    )
    if held:
        problem = refused(customer.id)
        if problem is not None:
            ctx.session.rollback()  # the record was never written, as when the check came first
            raise problem
    return customer, changes, precheck, current


# The reasons a match may rest on that only some callers are told (``visible_matches``: the SSN). A
# candidate holding such a value is checked before its ``INSERT``, always by the same statements: with
# the check in the ``INSERT`` (``_insert_statement``), a match the caller is not told of still cost the
# read of the matches, a round trip more than no match, and the time of a create confirmed a guessed
# SSN (test_a_guessed_ssn_costs_the_statements_of_a_wrong_guess).
_CONFIDENTIAL_REASONS = tuple(
    duplicates.REASONS.index(reason)
    for reason, names in duplicates.REASON_FIELDS.items()
    if any(name in CONFIDENTIAL for name in names)
)


def _holds_confidential_reason(candidate: duplicates.Candidate) -> bool:
    held = duplicates.shape(candidate)  # in the order of duplicates.REASONS
    return any(held[i] for i in _CONFIDENTIAL_REASONS)


def _custom_values_again(
    ctx: Context, customer: Customer, data: dict, changes: list[tuple[str, Any, Any]]
) -> list[tuple[str, Any, Any]]:
    """The new record's custom values validated again by the definitions that changed since this process
    read them: 422 when they refuse them (the command rolls the row back), else the row holds what
    they make of them. Returns the changes for the history."""
    merged, errors = custom_fields.validate_values(
        ctx.session, customer.kind, data.get("custom_fields") or {}, {}, creating=True
    )
    if errors:
        raise validation_problem(errors)
    if merged == customer.custom_fields:
        return changes
    ctx.session.execute(sql_update(_CUSTOMERS).where(_CUSTOMERS.c.id == customer.id).values(custom_fields=merged))
    set_committed_value(customer, "custom_fields", merged)
    kept = [change for change in changes if change[0] != "custom_fields"]
    return kept + [("custom_fields", {}, merged)] if merged else kept


def update(ctx: Context, customer: Customer, changes: dict) -> list[str]:
    """Applies a PATCH; returns the names of the fields that changed (empty: nothing to do)."""
    applied = _apply(ctx, customer, changes, creating=False)
    if not applied:
        return []
    customer.last_activity_at = utcnow()
    _flush(ctx.session)
    _record_changes(ctx, customer, applied, "update")
    names = sorted(name for name, _, _ in applied)
    if record.SEARCHED & set(names):
        search.reindex(ctx.session, customer)
    ctx.outbox.add(
        ctx.session,
        CustomerUpdated(
            customer_id=customer.id,
            changed=names,
            location_id=customer.location_id,
            parent_id=customer.parent_customer_id,
            archived=customer.archived_at is not None,
            restricted=_restricted(customer, names),
            monitoring_company_id=customer.monitoring_company_id if "monitoring_company_id" in names else None,
        ),
    )
    return names


def _restricted(customer: Customer, names: list[str]) -> dict[str, str]:
    """The fields among ``names`` an event's reader sees only with their section's view permission, and
    the event's own copies of such a field's value: ``parent_id`` (the record's ``parent_customer_id``,
    a sale-information field) is in every ``customer.created`` and ``customer.updated``, whatever
    changed, so its reader needs the same permission as the field's."""
    restricted = {
        name: permission for name in names if (permission := section_view_permission(name, customer.kind)) is not None
    }
    if customer.parent_customer_id is not None:
        permission = section_view_permission("parent_customer_id", customer.kind)
        if permission is not None:
            restricted["parent_id"] = permission
    return restricted


def convert(ctx: Context, lead: Customer, data: dict) -> Customer:
    """Converting a lead: office location and sold-by are required; data and history stay."""
    if lead.kind != LEAD:
        raise Problem(409, "Only a lead can be converted to a customer.", type=CONFLICT)
    target = data["location_id"]
    if not Access(ctx.identity, CUSTOMER, target).can_record("create"):
        raise field_forbidden({"location_id": "customers.create"})
    ensure_move_reveals_nothing(ctx, lead, CUSTOMER, target)
    errors = {}
    account_type = data.get("account_type") or lead.account_type
    if not account_type:
        errors["account_type"] = ["Required for customers; the lead has none, so send it."]
    if errors:
        raise validation_problem(errors)
    before = {
        "kind": lead.kind,
        "location_id": lead.location_id,
        "sold_by": lead.sold_by,
        "account_type": lead.account_type,
    }
    stored = dict(lead.custom_fields or {})
    merged_custom, custom_errors = custom_fields.validate_values(
        ctx.session, CUSTOMER, data.get("custom_fields") or {}, stored, creating=True
    )
    if custom_errors:
        raise validation_problem(custom_errors)
    lead.kind = CUSTOMER
    lead.location_id = target
    lead.sold_by = data["sold_by"]
    lead.account_type = account_type
    lead.custom_fields = merged_custom
    lead.converted_at = lead.last_activity_at = utcnow()
    _flush(ctx.session)
    after = {
        "kind": lead.kind,
        "location_id": lead.location_id,
        "sold_by": lead.sold_by,
        "account_type": lead.account_type,
    }
    for name in before:
        if before[name] != after[name]:
            history.record(ctx.session, ctx.actor, lead.id, "convert", field=name, old=before[name], new=after[name])
    if merged_custom != stored:
        history.record(ctx.session, ctx.actor, lead.id, "convert", field="custom_fields", old=stored, new=merged_custom)
    search.reindex(ctx.session, lead)
    ctx.outbox.add(ctx.session, CustomerConverted(customer_id=lead.id, location_id=lead.location_id))
    return lead


def copy_values(ctx: Context, source: Customer) -> dict:
    """The fields a copy starts with: what the caller may see *of the source, where it is*, minus
    per-account values. A confidential value masked for the caller there is left empty, whatever
    they may see where the copy goes: a copy never carries a value its maker could not read."""
    access = Access(ctx.identity, source.kind, source.location_id)
    values = {}
    for name in fields_of(source.kind):
        if name in READ_ONLY or name in NOT_COPIED or not visible_field(access, name):
            continue
        if name == "custom_fields":  # only the values of fields still defined (those shown)
            value = custom_fields.visible_values(ctx.session, source.kind, source.custom_fields)
            if value:
                values[name] = value
            continue
        value = record.read(source, name, ctx.cipher)
        if value is None or value is False or value == {}:
            continue
        values[name] = value
    return values


def duplicate(ctx: Context, source: Customer, overrides: dict) -> Customer:
    """Duplicate Customer: a new record starting as a copy (not a merge) of ``source``."""
    data = copy_values(ctx, source)
    target = Access(ctx.identity, source.kind, overrides.get("location_id", source.location_id))
    for name in list(data):  # leave out what the caller could not have entered on a new record
        if name != "location_id" and target.write_refusal(name, creating=True, has_saved_value=False):
            del data[name]
    data.update(overrides)
    data["kind"] = source.kind
    return create(ctx, data, allow_duplicates=True, copied_from=source)


def delete(ctx: Context, customer: Customer) -> list[str]:
    """Removes the record and its notes, contacts, tags, files and history; returns file store keys
    to remove once committed. Every other service drops its own data on ``customer.deleted``."""
    keys = list(ctx.session.scalars(select(CustomerFile.storage_key).where(CustomerFile.customer_id == customer.id)))
    customer_id = customer.id
    ctx.session.delete(customer)
    ctx.session.flush()
    ctx.outbox.add(ctx.session, CustomerDeleted(customer_id=customer_id))
    return keys
