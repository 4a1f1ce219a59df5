"""The customer record's header (the sticky header): ``GET /api/v1/customers/{id}/summary``.

The view asks the services in parallel with the caller's identity and hands their answers to
:func:`vigil_gateway.summaries.customer_summary`, which combines them; its response schema is here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask import current_app, g
from flask.views import MethodView
from marshmallow import Schema, fields

from vigil_shared.alike import alike
from vigil_shared.endpoints import Blueprint

from ..summaries import customer_summary
from ..upstream import ServiceUnavailable, call_service

blp = Blueprint(
    "customer_summary",
    __name__,
    url_prefix="/api/v1/customers",
    description="The customer record's header, gathered from every service",
)


class SummaryCustomer(Schema):
    """Passed through as the customer service wrote it (timestamps already in UTC `Z` form)."""

    id = fields.Integer()
    kind, first_name, last_name = alike(3, fields.String)
    business_name, dba_name = alike(2, fields.String, allow_none=True)
    location_id = fields.Integer(allow_none=True)
    city, state = alike(2, fields.String, allow_none=True)
    active = fields.Boolean()
    archived_at, converted_at = alike(2, fields.String, allow_none=True, metadata={"format": "date-time"})
    created_at = fields.String(metadata={"format": "date-time"})
    created_by = fields.String(allow_none=True)
    last_activity_at = fields.String(metadata={"format": "date-time"})


class SaleBadge(Schema):
    sale_date = fields.String(allow_none=True, metadata={"format": "date"})
    sold_by = fields.String(allow_none=True)


class InstallBadge(Schema):
    install_date = fields.String(allow_none=True, metadata={"format": "date"})
    install_tech = fields.String(allow_none=True)
    installed = fields.Boolean()


class StatusBox(Schema):
    category = fields.String(metadata={"description": "account, monitoring, installation, funding, billing"})
    status = fields.String(metadata={"description": "billing: past_due, balance_due, paid_up or credit"})
    balance = fields.Integer(metadata={"description": "billing only: minor units owed (negative: credit)"})
    past_due = fields.Integer(metadata={"description": "billing only: minor units past due"})
    currency = fields.String(metadata={"description": "billing only"})


class CreditBadge(Schema):
    grade = fields.String(allow_none=True, metadata={"description": "The customer's credit grade (active check)"})
    precheck_status = fields.String(
        allow_none=True,
        metadata={"description": "The latest ADT PreCheck: pending, running, approved, declined, manual_review, error"},
    )


class SummaryTag(Schema):
    id = fields.Integer()
    name = fields.String()
    color = fields.String(allow_none=True)


class FamilyMember(Schema):
    id = fields.Integer()
    name = fields.String()


class Family(Schema):
    header = fields.String(
        allow_none=True, metadata={"description": '"Sub-customer of {name}", "{N} sub-customers", or null'}
    )
    parent = fields.Nested(FamilyMember, allow_none=True)
    sub_customers = fields.List(fields.Nested(FamilyMember))


class CustomerSummary(Schema):
    customer = fields.Nested(
        SummaryCustomer, allow_none=True, metadata={"description": "null when the customer service did not answer"}
    )
    sale = fields.Nested(
        SaleBadge, allow_none=True, metadata={"description": "Customers only, with `customers.sale_info.view`"}
    )
    installation = fields.Nested(
        InstallBadge,
        allow_none=True,
        metadata={"description": "Customers only, with `customers.installation_info.view`"},
    )
    status_boxes = fields.List(fields.Nested(StatusBox), metadata={"description": "Customers only (not leads)"})
    tags = fields.List(fields.Nested(SummaryTag), allow_none=True)
    credit = fields.Nested(
        CreditBadge,
        allow_none=True,
        metadata={"description": "Customers only: credit grade and ADT PreCheck status (null parts when hidden)"},
    )
    counts = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(allow_none=True),
        metadata={
            "description": "Per tab: open notes & tickets, contacts, files, tags, properties, appointments, "
            "accounting (open invoices); "
            "null when hidden or unavailable"
        },
    )
    hidden = fields.List(fields.String(), metadata={"description": "Tabs you may not view"})
    family = fields.Nested(
        Family, allow_none=True, metadata={"description": "The parent/child indicator of the header (seed 001)"}
    )
    # marshmallow types Schema.partial (a load option) as a bool; a field of that name is what it declares here
    partial = fields.Boolean(metadata={"description": "True when a service did not answer"})  # type: ignore[assignment]
    unavailable = fields.List(fields.String(), metadata={"description": "Services that did not answer"})


def _fetch_all(calls: dict[str, tuple[str, str, dict]]) -> dict:
    """GETs in parallel on the caller's behalf: name → Reply, or ServiceUnavailable."""
    # current_app is a werkzeug LocalProxy, typed as the Flask app it stands for
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    identity, request_id = g.identity, g.get("request_id")

    def fetch(service: str, path: str, params: dict):
        with app.app_context():
            g.request_id = request_id
            try:
                return call_service(service, "GET", path, params=params, identity=identity)
            except ServiceUnavailable as exc:
                return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {name: pool.submit(fetch, *call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


NOWHERE = "You may view customers or leads nowhere"
UNSEEN = "No such customer or lead, or one in a location you may not view"


@blp.route("/<int:customer_id>/summary")
class Summary(MethodView):
    @blp.read("customers.view", CustomerSummary, forbidden=NOWHERE, not_found=UNSEEN)
    def get(self, customer_id):
        """The record's header: identity, sale and install badges, status boxes and a count per tab.

        Each part comes from the service that owns it, asked with your identity: a tab you may not
        view has no count and is listed in `hidden`. When a service is down, its parts are empty
        and `partial` is true, with the service named in `unavailable`.
        """
        return customer_summary(customer_id, _fetch_all)
