"""Tables the property service owns. No other service reads them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vigil_shared.db import UTCDateTime, new_declarative_base, utcnow
from vigil_shared.messaging.outbox import messaging_models

Base = new_declarative_base()
messaging = messaging_models(Base)


class Property(Base):
    __tablename__ = "properties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # no foreign key: customers live in the customer service's database
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    account_number: Mapped[str | None] = mapped_column(String(40), unique=True)
    address: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}


class KnownCustomer(Base):
    """Local replica of which customers exist, fed by ``customer.*`` events.

    A deleted customer stays as a tombstone so that a late or repeated ``customer.created`` cannot
    bring it back.
    """

    __tablename__ = "known_customers"

    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
