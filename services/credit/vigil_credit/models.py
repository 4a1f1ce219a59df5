"""Tables the credit service owns. No other service reads them. Only the outbox and inbox so far."""
from __future__ import annotations

from vigil_shared.db import new_declarative_base
from vigil_shared.messaging.outbox import messaging_models

Base = new_declarative_base()
messaging = messaging_models(Base)
