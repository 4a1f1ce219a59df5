"""Tables the billing service owns. No other service reads them. Only the outbox and inbox so far."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from vigil_shared.db import ServiceTables, service_metadata
from vigil_shared.messaging.outbox import messaging_models


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


messaging = messaging_models(Base)
