"""The company's billing configuration: currency, default tax rate, payment terms, MMR items and mode.

One row, created with its defaults the first time it is read. The currency is fixed once money has
been billed in it (changing it would re-denominate every stored amount).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil_shared.errors import conflict

from .models import MONEY_TABLES, BillingSettings

_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
COMPANY = 1


def _insert(session: Session):
    return _UPSERTS[session.get_bind().dialect.name](BillingSettings)


def settings_of(session: Session) -> BillingSettings:
    found = session.get(BillingSettings, COMPANY)
    if found is not None:
        return found
    session.execute(
        _insert(session)
        .values(
            id=COMPANY,
            currency="USD",
            tax_rate_bp=0,
            payment_terms_days=30,
            mmr_breakout=False,
            mmr_items=[],
            version=1,
        )
        .on_conflict_do_nothing(index_elements=[BillingSettings.id])
    )
    return session.scalars(select(BillingSettings).where(BillingSettings.id == COMPANY)).one()


def item_keys(settings: BillingSettings) -> list[str]:
    return [item["key"] for item in settings.mmr_items or []]


def money_billed(session: Session) -> bool:
    """Whether any amount is stored in the company currency yet (``models.MONEY_TABLES``)."""
    return any(session.scalar(select(table.id).limit(1)) is not None for table in MONEY_TABLES)


def update_settings(session: Session, settings: BillingSettings, changes: dict) -> BillingSettings:
    if "currency" in changes and changes["currency"] != settings.currency and money_billed(session):
        raise conflict(
            "The currency cannot change once amounts are stored in it.",
            errors={"currency": ["Amounts are already stored in " + settings.currency + "."]},
        )
    for name, value in changes.items():
        setattr(settings, name, value)
    return settings
