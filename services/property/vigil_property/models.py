"""Tables the property service owns. No other service reads them.

Nothing here has a foreign key to another service's data: customers, users (technicians) and
locations live elsewhere and are referred to by id. A property's office location is its
customer's, kept in the ``known_customers`` replica, so a customer moving location moves all of its
properties at once.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from vigil_shared.db import UTCDateTime, new_declarative_base, utcnow
from vigil_shared.messaging.outbox import messaging_models

Base = new_declarative_base()
messaging = messaging_models(Base)

PROPERTY_TYPES = ("residential", "commercial")
MONITORING_STATUSES = ("active", "suspended", "cancelled")
ACCESS_MANAGERS = ("owner", "tenant", "letting_agent", "other")


class Property(Base):
    __tablename__ = "properties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # no foreign key: customers live in the customer service's database
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    account_number: Mapped[str | None] = mapped_column(String(40), unique=True)
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
    notes: Mapped[str | None] = mapped_column(Text)
    access_managed_by: Mapped[str | None] = mapped_column(String(20))
    access_name: Mapped[str | None] = mapped_column(String(200))
    access_phone: Mapped[str | None] = mapped_column(String(40))
    access_email: Mapped[str | None] = mapped_column(String(254))
    access_notes: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}


class PropertyHistory(Base):
    """Who changed what on a property, when and through which channel. Moves with the property."""

    __tablename__ = "property_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    property_id: Mapped[int] = mapped_column(ForeignKey("properties.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(30))  # created, updated, deactivated, reactivated, transferred
    field: Mapped[str | None] = mapped_column(String(50))
    old_value: Mapped[str | None] = mapped_column(Text)  # confidential values are stored as "***"
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(500))
    actor_id: Mapped[str | None] = mapped_column(String(100))
    actor_name: Mapped[str | None] = mapped_column(String(150))
    source: Mapped[str] = mapped_column(String(20), default="api")
    request_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


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
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
