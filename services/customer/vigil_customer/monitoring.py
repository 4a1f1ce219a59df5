"""The monitoring-company catalog and the ADT PreCheck's rules at customer create.

A customer's *Monitored By* is ``monitoring_company_id``, an active company of this catalog. When it
is an ADT company the create runs the ADT PreCheck unless the caller says ``run_precheck=false``;
with it, the fields ADT needs are required (:data:`PRECHECK_REQUIRED`, and the dealer number when
the company ``requires_dealer_number``: the seed's "Dealer Number, if applicable"), and when the
company has PreCheck Order Enabled the ``customer.created`` event says so and the credit service
starts the PreCheck in the background.

*Monitored By* cannot be changed while a property of the customer is linked to a central station
(seed 001): :func:`ensure_not_linked`, from the property replica the property events keep.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.errors import Problem, conflict, flush_unique, get_or_404, validation_problem

from . import record
from .models import Customer, MonitoringCompany, PropertyAccount

STATION_LINKED = "urn:vigil:problem:central-station-linked"
# the seed's ADT-required fields; the dealer number too when the company requires one ("if applicable")
PRECHECK_REQUIRED = ("monitoring_company_id", "birthdate", "ssn", "email", "address_line1", "zip", "county")
PRECHECK_COMMERCIAL = ("business_name", "business_contact")
PRECHECK_MESSAGE = "Required for the ADT PreCheck (create with run_precheck=false to skip it)."


def catalog_statement(active: bool | None = None):
    statement = select(MonitoringCompany).order_by(MonitoringCompany.name_key)
    if active is not None:
        statement = statement.where(MonitoringCompany.active.is_(active))
    return statement


def get_company(session: Session, company_id: int) -> MonitoringCompany:
    return get_or_404(session, MonitoringCompany, company_id, "monitoring company")


def _taken() -> Exception:
    return conflict("A monitoring company with this name exists.", errors={"name": ["Already in use."]})


def create_company(session: Session, data: dict) -> MonitoringCompany:
    key = data["name"].lower()
    if session.scalar(select(MonitoringCompany.id).where(MonitoringCompany.name_key == key)) is not None:
        raise _taken()
    company = MonitoringCompany(
        name=data["name"],
        name_key=key,
        is_adt=data.get("is_adt", False),
        precheck_order_enabled=data.get("precheck_order_enabled", False),
        requires_dealer_number=data.get("requires_dealer_number", False),
        active=data.get("active", True),
    )
    session.add(company)
    flush_unique(session, _taken)
    return company


def update_company(session: Session, company: MonitoringCompany, changes: dict) -> MonitoringCompany:
    if "name" in changes:
        key = changes["name"].lower()
        other = session.scalar(select(MonitoringCompany.id).where(MonitoringCompany.name_key == key))
        if other is not None and other != company.id:
            raise _taken()
        company.name, company.name_key = changes["name"], key
    for name in ("is_adt", "precheck_order_enabled", "requires_dealer_number", "active"):
        if name in changes:
            setattr(company, name, changes[name])
    flush_unique(session, _taken)
    return company


def company_errors(session: Session, company_id: int | None) -> dict[str, list[str]]:
    """A customer may name only an active company of the catalog."""
    if company_id is None:
        return {}
    company = session.get(MonitoringCompany, company_id)
    if company is None or not company.active:
        return {"monitoring_company_id": ["No such active monitoring company."]}
    return {}


def precheck_decision(session: Session, customer: Customer, run_precheck: bool | None, cipher) -> bool:
    """Whether the create runs the ADT PreCheck (422 listing the missing ADT fields when it must and cannot).

    Returns True when the PreCheck is to start after the create (the company has PreCheck Order Enabled).
    """
    company = session.get(MonitoringCompany, customer.monitoring_company_id) if customer.monitoring_company_id else None
    is_adt = company is not None and company.is_adt
    if run_precheck is None:
        run_precheck = is_adt
    if not run_precheck:
        return False
    if not is_adt:
        raise validation_problem({"run_precheck": ["The ADT PreCheck needs an ADT monitoring company."]})
    assert company is not None
    needed = list(PRECHECK_REQUIRED)
    if company.requires_dealer_number:
        needed.append("dealer_number")
    if (customer.account_type or "").lower() == "commercial":
        needed += PRECHECK_COMMERCIAL
    missing = [name for name in needed if record.read(customer, name, cipher) in (None, "")]
    if missing:
        raise validation_problem({name: [PRECHECK_MESSAGE] for name in missing})
    return bool(company.precheck_order_enabled)


def linked_properties(session: Session, customer_id: int) -> list[PropertyAccount]:
    """The customer's properties linked to a central station (they received a message from one)."""
    return list(
        session.scalars(
            select(PropertyAccount)
            .where(
                PropertyAccount.customer_id == customer_id,
                PropertyAccount.deleted.is_(False),
                PropertyAccount.central_station.is_not(None),
            )
            .order_by(PropertyAccount.property_id)
        )
    )


def ensure_not_linked(session: Session, customer_id: int) -> None:
    """409 when Monitored By is being changed while a property of the customer is linked to a central station."""
    linked = linked_properties(session, customer_id)
    if linked:
        raise Problem(
            409,
            "Monitored By cannot be changed while a property of this customer is linked to a central station "
            f"({', '.join(sorted({p.central_station or '' for p in linked}))}). Remove the link first.",
            type=STATION_LINKED,
            title="The customer is linked to a central station",
            properties=[
                {
                    "property_id": p.property_id,
                    "account_number": p.account_number,
                    "central_station": p.central_station,
                    "link": f"/api/v1/properties/{p.property_id}",
                }
                for p in linked
            ],
        )
