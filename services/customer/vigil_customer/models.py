"""Tables the customer service owns. No other service reads them.

Confidential values (SSN, birthdate, installation codes, contact passcodes) are stored only as
FieldCipher tokens in ``*_enc`` columns; the SSN also has a keyed blind index for equality lookups.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, SmallInteger, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.orm.decl_api import DeclarativeAttributeIntercept

from vigil_shared.db import EditedRecord, ServiceTables, UTCDateTime, Versioned, service_metadata, utcnow
from vigil_shared.messaging.outbox import messaging_models
from vigil_shared.operations import operation_models

from . import registry


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


messaging = messaging_models(Base)
operations = operation_models(Base)  # the archive/unarchive sagas this service runs


def binary_string(length: int) -> String:
    """Byte-order text: prefix ranges and keyset comparisons behave the same in SQL and Python."""
    return String(length, collation="C").with_variant(String(length), "sqlite")


class RegistryColumns(DeclarativeAttributeIntercept):
    """Metaclass of a model whose columns the field registry adds: a type checker sees them as Any."""

    if TYPE_CHECKING:

        def __getattr__(cls, name: str) -> Any: ...


class Customer(EditedRecord, Base, metaclass=RegistryColumns):
    """A customer or a lead (``kind``): the whole Home-page record.

    The columns behind the record's fields (``first_name``, ``ssn_enc``, ``primary_phone_e164``…)
    come from :data:`vigil_customer.registry.FIELDS`; only bookkeeping is declared here.
    """

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), default="customer", server_default="customer")
    # the SSN's keyed blind index: equality lookups without decrypting
    ssn_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # every field's columns, declared once in the registry (a class body's locals() is its namespace)
    locals().update(registry.column_definitions())

    # bookkeeping
    sort_name: Mapped[str] = mapped_column(binary_string(220), default="")
    name_address_key: Mapped[str | None] = mapped_column(String(400), index=True)
    created_by: Mapped[str | None] = mapped_column(String(100))
    converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    archive_operation_id: Mapped[str | None] = mapped_column(String(48))  # the operation that archived it
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("ix_customers_sort", "sort_name", "id", "location_id", "kind"),  # covering: deep pages read no rows
        Index("ix_customers_created", "created_at", "id"),
        Index("ix_customers_activity", "last_activity_at", "id"),
    )


OWN_TERM, ACCOUNT_TERM = 0, 1  # SearchTerm.source / SearchPair.source


class SearchTerm(Base):
    """One searchable word of a record (name, business, DBA, email, phone digits, account number).

    Word-prefix search is a range scan of ``term``; kind, location and the sort key ride along so
    page 1 and its bounded count are answered from the index alone. ``covered`` is the length of
    the longest *other* term of the same record that is a prefix of this one (``john`` covers
    ``john.smith@example.com``): a search word no longer than that already matches the shorter
    term, so the index skips the covered entries and a record rarely matches twice.

    ``source`` says where the term comes from: :data:`OWN_TERM` (0), the record's own fields (seen by
    whoever sees the record), or :data:`ACCOUNT_TERM` (1), only a property account number (from the
    replica), which matches only where the caller holds ``properties.view`` (a term that is both is
    the record's own). An own term's ``covered`` counts own terms only, so a hidden account number
    never keeps a name from matching; an account term's counts every other term.
    """

    __tablename__ = "customer_search_terms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    term: Mapped[str] = mapped_column(binary_string(120))
    head: Mapped[str] = mapped_column(binary_string(3), default="", server_default="")  # term[:3]
    covered: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    kind: Mapped[str] = mapped_column(String(10))
    location_id: Mapped[int | None] = mapped_column(Integer)
    sort_name: Mapped[str] = mapped_column(binary_string(220))
    source: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")  # OWN_TERM or ACCOUNT_TERM

    __table_args__ = (
        # few matches: a range of terms, read at once; a term's entries in record order, as the heap
        # holds them (an index-only scan then rarely switches visibility-map page: migration 0010);
        # ``source`` last, so a caller without ``properties.view`` somewhere still reads the index alone
        Index(
            "ix_customer_search_terms_match",
            "covered",
            "term",
            "location_id",
            "customer_id",
            "kind",
            "sort_name",
            "source",
        ),
        # many matches: the terms sharing the first three characters, already in name order
        Index(
            "ix_customer_search_terms_walk",
            "head",
            "sort_name",
            "customer_id",
            "covered",
            "term",
            "location_id",
            "kind",
            "source",
        ),
    )


class SearchPair(Base):
    """Two search terms of one record that a letter word can match (``james`` and ``smith``), kept as
    one row keyed by both heads, so a search of two such words reads the records holding both from
    one narrow index range (a few hundred entries) instead of joining each word's range (tens of
    thousands for two common words). ``lo`` < ``hi`` in byte order; kind, location and sort key ride
    along as in the term table. Which terms pair: :func:`vigil_customer.search.pairable` (written with
    the terms, by the same code; migration 0011 derived them in SQL for records written before).
    ``source`` is :data:`ACCOUNT_TERM` when either term is one (the pair then matches only where the
    caller holds ``properties.view``), else :data:`OWN_TERM`.
    """

    __tablename__ = "customer_search_pairs"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    lo: Mapped[str] = mapped_column(binary_string(120), primary_key=True)
    hi: Mapped[str] = mapped_column(binary_string(120), primary_key=True)
    lo_head: Mapped[str] = mapped_column(binary_string(3))
    hi_head: Mapped[str] = mapped_column(binary_string(3))
    kind: Mapped[str] = mapped_column(String(10))
    location_id: Mapped[int | None] = mapped_column(Integer)
    sort_name: Mapped[str] = mapped_column(binary_string(220))
    source: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")  # OWN_TERM or ACCOUNT_TERM

    __table_args__ = (
        Index(
            "ix_customer_search_pairs_match",
            "lo_head",
            "hi_head",
            "lo",
            "hi",
            "location_id",
            "customer_id",
            "kind",
            "sort_name",
            "source",
        ),
    )


class PropertyAccount(Base):
    """Replica of the property service's account numbers, fed by property events (search by account).

    A deleted property stays as a tombstone so a late or repeated event cannot bring it back.
    """

    __tablename__ = "property_accounts"

    property_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    account_number: Mapped[str | None] = mapped_column(String(100))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # the central station the property is linked to (it received a message from it): Monitored By is locked
    central_station: Mapped[str | None] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class HistoryEntry(Base):
    """One changed field (or one event on a child) of a record, with who, when, how and from where."""

    __tablename__ = "customer_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[str | None] = mapped_column(String(100))
    actor_name: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(20))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(30))
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[int | None] = mapped_column(Integer)
    field: Mapped[str | None] = mapped_column(String(100))
    # values as text; a confidential field's values only as FieldCipher tokens, in the *_enc columns
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    old_value_enc: Mapped[str | None] = mapped_column(Text)
    new_value_enc: Mapped[str | None] = mapped_column(Text)
    confidential: Mapped[str | None] = mapped_column(String(30))  # ssn, birthdate or installation_codes

    __table_args__ = (Index("ix_customer_history_customer", "customer_id", "at", "id"),)


class Note(EditedRecord, Base):
    """A note, or a ticket (a note with assignee, due date, priority and status)."""

    __tablename__ = "customer_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(10), default="note")
    text: Mapped[str] = mapped_column(Text)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    assignee: Mapped[str | None] = mapped_column(String(100))
    due_date: Mapped[date | None] = mapped_column(Date)
    priority: Mapped[str | None] = mapped_column(String(10))
    status: Mapped[str | None] = mapped_column(String(20))
    created_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (Index("ix_customer_notes_customer", "customer_id", "urgent", "created_at"),)


class Contact(EditedRecord, Base):
    """An emergency contact (called in ``call_priority`` order) or another contact of the record."""

    __tablename__ = "customer_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    relation: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str | None] = mapped_column(String(100))
    phones: Mapped[list] = mapped_column(JSON, default=list)  # [{"label", "number", "e164"}]
    email: Mapped[str | None] = mapped_column(String(254))
    has_key: Mapped[bool] = mapped_column(Boolean, default=False)
    call_priority: Mapped[int | None] = mapped_column(Integer)
    passcode_enc: Mapped[str | None] = mapped_column(Text)
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_customer_contacts_customer", "customer_id", "type", "call_priority"),)


class Tag(Versioned, Base):
    """An entry of the company's tag catalog."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    name_key: Mapped[str] = mapped_column(String(50), unique=True)
    color: Mapped[str | None] = mapped_column(String(7))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CustomerTag(Base):
    __tablename__ = "customer_tags"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    applied_by: Mapped[str | None] = mapped_column(String(100))

    tag: Mapped[Tag] = relationship(lazy="joined")


class CustomerFile(Base):
    """Metadata of an uploaded file; the bytes live in the file store under ``storage_key``."""

    __tablename__ = "customer_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(String(500))
    uploaded_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CustomFieldDefinition(Versioned, Base):
    """An admin-defined field of customers and/or leads; values live in ``Customer.custom_fields``."""

    __tablename__ = "custom_fields"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(50), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(10))
    options: Mapped[list] = mapped_column(JSON, default=list)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    applies_to: Mapped[str] = mapped_column(String(10), default="both")
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MonitoringCompany(Versioned, Base):
    """The catalog of monitoring companies a customer's *Monitored By* names (it replaced free text).

    ``is_adt``: an ADT company, whose customers are created with the ADT PreCheck by default;
    ``precheck_order_enabled``: the PreCheck then starts in the background after the create;
    ``requires_dealer_number``: the dealer is known to ADT by a dealer number, so the PreCheck needs one
    (the seed's "Dealer Number, if applicable").
    """

    __tablename__ = "monitoring_companies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100), unique=True)  # lower case: unique whatever the case
    is_adt: Mapped[bool] = mapped_column(Boolean, default=False)
    precheck_order_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    requires_dealer_number: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
