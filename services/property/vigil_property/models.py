"""Tables the property service owns. No other service reads them.

Nothing here has a foreign key to another service's data: customers, users (technicians) and
locations live elsewhere and are referred to by id. A property's office location is its
customer's, kept in the ``known_customers`` replica, so a customer moving location moves all of its
properties at once.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text, false, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from vigil_shared import db
from vigil_shared.db import EditedRecord, ServiceTables, UTCDateTime, service_metadata, utcnow
from vigil_shared.messaging.outbox import messaging_models

from .account_numbers import account_key as normalised_account


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


messaging = messaging_models(Base)

PROPERTY_TYPES = ("residential", "commercial")
MONITORING_STATUSES = ("active", "suspended", "cancelled", "in_test")
SIGNAL_KINDS = ("alarm", "trouble", "restore", "test", "open", "close", "status")
ACCESS_MANAGERS = ("owner", "tenant", "letting_agent", "other")
EQUIPMENT_STATUSES = ("installed", "faulty", "removed")


class RowVersioned(db.OptimisticLock, db.Timestamps):
    """Like ``EditedRecord``, with the row's version in ``row_version``: systems have a ``version`` of
    their own (their software's)."""

    lock_column = "row_version"
    row_version: Mapped[int] = mapped_column(Integer, nullable=False)


APPOINTMENT_TYPES = ("install", "service", "inspection", "sale")
APPOINTMENT_STATUSES = ("scheduled", "completed", "cancelled")


class Property(EditedRecord, Base):
    __tablename__ = "properties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # no foreign key: customers live in the customer service's database
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    account_number: Mapped[str | None] = mapped_column(String(40), index=True)  # as typed, trimmed
    # the account number as compared (``account_numbers.account_key``): unique, set with account_number
    account_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    # The PIN is never stored in clear: a keyed HMAC (with a per-row salt) to check it, and a Fernet
    # token for callers allowed to see it. Both NULL means the default PIN, 0000.
    pin_salt: Mapped[str | None] = mapped_column(String(32))
    pin_hash: Mapped[str | None] = mapped_column(String(64))
    pin_encrypted: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(String(20))
    system_type: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    monitoring_status: Mapped[str] = mapped_column(String(20), default="active", server_default="active")
    # the central station the property is linked to: set by the first message from it, cleared by an
    # edit (unlink); while set, the customer's Monitored By cannot change (seed 001)
    central_station: Mapped[str | None] = mapped_column(String(120))
    notes: Mapped[str | None] = mapped_column(Text)
    access_managed_by: Mapped[str | None] = mapped_column(String(20))
    access_name: Mapped[str | None] = mapped_column(String(200))
    access_phone: Mapped[str | None] = mapped_column(String(40))
    access_email: Mapped[str | None] = mapped_column(String(254))
    access_notes: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @validates("account_number")
    def _keep_key(self, _name, value):
        self.account_key = normalised_account(value)
        return value


class PropertyHistory(Base):
    """Who changed what on a property, when and through which channel. Moves with the property."""

    __tablename__ = "property_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    property_id: Mapped[int] = mapped_column(ForeignKey("properties.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(30))  # created, updated, deactivated, reactivated, transferred…
    subject: Mapped[str | None] = mapped_column(String(50))  # "system 3", "equipment 5"; None: the property itself
    field: Mapped[str | None] = mapped_column(String(50))
    old_value: Mapped[str | None] = mapped_column(Text)  # confidential values are stored as "***"
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(500))
    actor_id: Mapped[str | None] = mapped_column(String(100))
    actor_name: Mapped[str | None] = mapped_column(String(150))
    source: Mapped[str] = mapped_column(String(20), default="api")
    request_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SystemKind(RowVersioned, Base):
    """A kind of system an admin defines once ("DSC PowerSeries", "Hikvision NVR") and the fields it asks for.

    ``fields`` is a list of ``{"name", "label", "required"}``; a name is either one of the system's
    own fields (``ip_address``, ``port``, ``username``, ``password``, ``version``) or a custom one
    whose values live in the system's ``details``.
    """

    __tablename__ = "system_kinds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    manufacturer: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[list] = mapped_column(JSON, default=list)


class System(RowVersioned, Base):
    """A system of some kind installed at a property, with how to reach and log in to it."""

    __tablename__ = "systems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    property_id: Mapped[int] = mapped_column(ForeignKey("properties.id", ondelete="CASCADE"), index=True)
    kind_id: Mapped[int] = mapped_column(ForeignKey("system_kinds.id", ondelete="RESTRICT"), index=True)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    port: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(100))
    password_encrypted: Mapped[str | None] = mapped_column(Text)  # FieldCipher token, never the password
    version: Mapped[str | None] = mapped_column(String(50))  # the system's software or firmware version
    notes: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # the kind's custom fields


class Equipment(RowVersioned, Base):
    """A piece of equipment installed at a property (a sensor, a keypad, a camera…)."""

    __tablename__ = "equipment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    property_id: Mapped[int] = mapped_column(ForeignKey("properties.id", ondelete="CASCADE"), index=True)
    item: Mapped[str] = mapped_column(String(200))
    zone: Mapped[str | None] = mapped_column(String(50))
    serial_number: Mapped[str | None] = mapped_column(String(100))
    install_date: Mapped[date | None] = mapped_column(Date)
    warranty_end: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="installed")
    notes: Mapped[str | None] = mapped_column(Text)


class Appointment(RowVersioned, Base):
    """A technician or sales visit at a property. Cancelled ones stay, with who cancelled, when and why."""

    __tablename__ = "appointments"
    __table_args__ = (Index("ix_appointments_technician_id_starts_at", "technician_id", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    property_id: Mapped[int] = mapped_column(ForeignKey("properties.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(20))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    technician_id: Mapped[int | None] = mapped_column(Integer)  # a gateway user id
    status: Mapped[str] = mapped_column(String(20), default="scheduled")
    notes: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_by: Mapped[str | None] = mapped_column(String(150))
    # the archive operation that cancelled it (restored only by an unarchive naming that operation)
    cancelled_by_operation: Mapped[str | None] = mapped_column(String(48), index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PinGuard(Base):
    """Wrong technician-portal PINs of one property in a row, and until when it is locked."""

    __tablename__ = "pin_guards"

    property_id: Mapped[int] = mapped_column(
        ForeignKey("properties.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LookupWindow(Base):
    """Technician-portal attempts of one client (its address) in the current rate-limit window."""

    __tablename__ = "lookup_windows"

    client: Mapped[str] = mapped_column(String(100), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class KnownCustomer(Base):
    """Local replica of which customers exist and in which office location, fed by ``customer.*`` events.

    A deleted customer stays as a tombstone so that a late or repeated ``customer.created`` cannot
    bring it back. ``location_as_of`` is when the stored location was true; an event older than it
    (a redelivery, a retry overtaking a newer one) does not overwrite it.
    """

    __tablename__ = "known_customers"

    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    location_id: Mapped[int | None] = mapped_column(Integer, index=True)
    location_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # archived customers are read-only here too (vigil_shared.archived); fed by the archive saga's events
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    archived_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the customer's Monitored By (customer.created/updated): the central station of that monitoring
    # company may link the customer's properties with its first message (vigil_property.monitoring)
    monitoring_company_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Signal(Base):
    """What a central station sent about an account: a signal (alarm, trouble, restore, test,
    open/close, with zone and panel user) or an account status. ``property_id`` is null while no
    property has the account number: an unmatched signal an operator resolves (never dropped)."""

    __tablename__ = "signals"
    __table_args__ = (
        Index("ix_signals_property", "property_id", "occurred_at"),
        Index("ix_signals_unmatched", "property_id", "resolved_at"),
        # a message is logged once, even when the gateway sends its batch again
        Index("ux_signals_message", "central_station", "message_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    property_id: Mapped[int | None] = mapped_column(Integer)
    account_number: Mapped[str] = mapped_column(String(40))
    account_key: Mapped[str] = mapped_column(String(40), index=True)
    central_station: Mapped[str] = mapped_column(String(120))
    message_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(20))  # of an account status message
    zone: Mapped[str | None] = mapped_column(String(40))
    panel_user: Mapped[str | None] = mapped_column(String(40))
    description: Mapped[str | None] = mapped_column(String(300))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(150))
