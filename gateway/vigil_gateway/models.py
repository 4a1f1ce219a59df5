"""Tables the gateway owns: who may come through the door, with what rights, and what they did."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from vigil_shared.db import ServiceTables, UTCDateTime, service_metadata, utcnow
from vigil_shared.messaging.outbox import IdempotencyColumns


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


class Edited:
    """Columns of a record administrators edit: its version (the ETag, see versions.py; a user's counts
    edits only, not sign-ins) and when it was made and last changed."""

    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Location(Edited, Base):
    """An office location; every customer and lead belongs to one, and rights are granted per location."""

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    address: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(40))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Role(Edited, Base):
    """A named set of permissions from the catalog (``vigil_shared.permissions``)."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    permissions: Mapped[list] = mapped_column(JSON, default=list)


class User(Edited, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # every permission in every location
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)  # consecutive, reset by a good login
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    grants: Mapped[list[Grant]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin", order_by="Grant.id"
    )


class Grant(Base):
    """A role held by a user at one location, or at every location when ``location_id`` is null."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("user_id", "role_id", "location_id", name="uq_grants_user_role_location"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="RESTRICT"), index=True)
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id", ondelete="RESTRICT"))

    user: Mapped[User] = relationship(back_populates="grants")
    role: Mapped[Role] = relationship(lazy="joined")


class Session(Base):
    """One sign-in: its access tokens carry the id, its refresh token rotates on every use."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    refresh_hash: Mapped[str] = mapped_column(String(64))
    previous_refresh_hash: Mapped[str | None] = mapped_column(String(64))  # a replay of it means theft
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """An integration's credential: a subset of permissions at chosen locations, shown once, stored hashed."""

    __tablename__ = "api_keys"
    if TYPE_CHECKING:
        key: str  # the plaintext, set (not stored) on a new key for the response that creates it

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(24), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    permissions: Mapped[list] = mapped_column(JSON, default=list)
    location_ids: Mapped[list | None] = mapped_column(JSON)  # None: every location
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The key this one was made with (None: made by a signed-in user); it stops when that one does.
    made_with_key_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class LoginFailures(Base):
    """Failed sign-ins in the current window, per username and per client address."""

    __tablename__ = "login_failures"

    scope_key: Mapped[str] = mapped_column(String(200), primary_key=True)  # "user:<name>" or "addr:<ip>"
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    count: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(Base):
    """Append-only (database triggers refuse UPDATE and DELETE): who did what, when, from where."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(150), index=True)
    actor_kind: Mapped[str | None] = mapped_column(String(20))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(80), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict | None] = mapped_column(JSON)


class AuthState(Base):
    """One row: ``epoch`` grows with every change to who may do what (sessions, users, grants, roles,
    locations, keys). Gateways cache resolved identities and reuse them while the epoch stands still,
    so a revocation applies on the very next call without resolving rights on every call."""

    __tablename__ = "auth_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyRecord(IdempotencyColumns, Base):
    """The first answer to a POST sent with an ``Idempotency-Key``, encrypted (``vigil_shared.idempotency``)."""

    __tablename__ = "idempotency_keys"


# --- webhooks and the change feed (see docs/integrations.md) --------------------------------------


class FeedEvent(Base):
    """Every domain event the services publish, as the gateway received it: the change feed and the
    source of webhook deliveries. ``event_id`` is the outbox event's id (unique: the gateway's inbox)."""

    __tablename__ = "feed_events"

    position: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    source: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON)  # ids, kinds, changed field names: never a confidential value
    location_id: Mapped[int | None] = mapped_column(Integer)  # of the record, for filtering by the reader's rights
    customer_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), index=True)


class RecordLocation(Base):
    """The location of each customer the gateway has heard of, so a deletion or a property event can be
    filtered by location after the record is gone."""

    __tablename__ = "record_locations"

    # the customer service's id, never generated here (the migration's "noautoinc")
    customer_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    location_id: Mapped[int | None] = mapped_column(Integer)


class WebhookSubscription(Base):
    """An endpoint that receives signed events; owned by the user or API key that created it."""

    __tablename__ = "webhook_subscriptions"
    if TYPE_CHECKING:
        plaintext_secret: str  # set (not stored) on a new subscription for the response that creates it

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list | None] = mapped_column(JSON)  # None: every type
    description: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    owner_user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    owner_key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    secret: Mapped[str] = mapped_column(Text)  # FieldCipher token of the whsec_ secret
    previous_secret: Mapped[str | None] = mapped_column(Text)  # still signing until previous_secret_until
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: its payload as the owner may read it, and its state."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
        # what the delivery process and the sweep look for, often: the pending ones by when they are due
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(36))  # looked up with its subscription (the unique index)
    event_type: Mapped[str] = mapped_column(String(100))
    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))  # the feed event's
    # The body last sent (built anew each attempt): a ``webhook_bodies`` row, shared by every delivery that
    # sent the same body, kept ``VIGIL_WEBHOOK_BODY_RETENTION_DAYS`` (no foreign key: the prune drops a
    # body without writing its deliveries' rows, so an id may name a body no longer kept).
    body_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    # no longer written (migration 0014 emptied it): each body was kept once per delivery, uncompressed
    payload: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|succeeded|failed|skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class WebhookBody(Base):
    """A webhook body as sent, kept once however many deliveries sent it (an event's deliveries to owners
    who read it alike, and its retries while the record is unchanged): compressed (zlib), then encrypted
    (the webhook cipher), kept ``VIGIL_WEBHOOK_BODY_RETENTION_DAYS`` after it was first sent."""

    __tablename__ = "webhook_bodies"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    # a keyed HMAC of the body (the webhook cipher's blind index): equal bodies find one row, and it says
    # nothing of the body to whoever reads the table without the gateway's secret
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # the Fernet token's bytes (webhooks.seal_body)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery: status, latency and the first bytes of the answer."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(300))


class Integration(Base):
    """A central station allowed to post signals and account statuses, with its own signing secret and rate."""

    __tablename__ = "integrations"
    if TYPE_CHECKING:
        plaintext_secret: str  # set (not stored) for the response that creates or rotates it

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)  # the central station, as signals record it
    secret: Mapped[str] = mapped_column(Text)  # FieldCipher token of the whsec_ secret
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=6000)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    accounts_url: Mapped[str | None] = mapped_column(String(2000))  # the station's account list, for drift checks
    # the monitoring company (customer service catalog) whose station this is: its first message to a
    # property not yet linked to a station matches only when the customer's Monitored By is this company
    monitoring_company_id: Mapped[int | None] = mapped_column(Integer)
    drift_report: Mapped[dict | None] = mapped_column(JSON)
    drift_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    drift_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    drift_error: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class IncomingMessage(Base):
    """A message id an integration sent, kept past the timestamp tolerance: a replay of it is refused."""

    __tablename__ = "incoming_messages"

    integration_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class RateWindow(Base):
    """A fixed one-minute window of a rate limit (``name``: ``integration:<id>``), counted by every
    gateway process with one atomic upsert."""

    __tablename__ = "rate_windows"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger)  # Unix time // 60
    count: Mapped[int] = mapped_column(Integer)
