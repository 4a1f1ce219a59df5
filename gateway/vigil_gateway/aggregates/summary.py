"""The customer record's header (seed 001 "The sticky header"): ``GET /api/v1/customers/{id}/summary``.

Identity, metadata badges, status boxes and a count per tab, gathered from the services that own
them with the caller's own identity, so every part follows the caller's permissions: a tab the
caller may not view has no count (it is listed in ``hidden``). A service that does not answer
leaves its parts empty and the summary says so (``partial``, ``unavailable``) instead of failing.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import current_app, g
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from vigil_shared.errors import Problem
from vigil_shared.web import requires

from ..upstream import ServiceUnavailable, call_service

blp = Blueprint("customer_summary", __name__, url_prefix="/api/v1/customers",
                description="The customer record's header, gathered from every service")

IDENTITY_FIELDS = ("id", "kind", "first_name", "last_name", "business_name", "dba_name", "location_id", "city",
                   "state", "active", "archived_at", "converted_at", "created_at", "created_by", "last_activity_at")
PROBLEM_EXTRAS = ("permission",)
# tab → (service, path under the customer, query that makes `total` the tab's count)
TABS = {
    "notes": ("customer", "notes", {"open": "true"}),
    "contacts": ("customer", "contacts", {}),
    "files": ("customer", "files", {}),
    "tags": ("customer", "tags", {}),
    "properties": ("property", "properties", {}),
    "appointments": ("property", "appointments", {}),
}


class SummaryCustomer(Schema):
    """Passed through as the customer service wrote it (timestamps already in UTC `Z` form)."""

    id = fields.Integer()
    kind = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    business_name = fields.String(allow_none=True)
    dba_name = fields.String(allow_none=True)
    location_id = fields.Integer(allow_none=True)
    city = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    active = fields.Boolean()
    archived_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    converted_at = fields.String(allow_none=True, metadata={"format": "date-time"})
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
    category = fields.String(metadata={"description": "account, monitoring, installation, funding"})
    status = fields.String()


class SummaryTag(Schema):
    id = fields.Integer()
    name = fields.String()
    color = fields.String(allow_none=True)


class CustomerSummary(Schema):
    customer = fields.Nested(SummaryCustomer, allow_none=True,
                             metadata={"description": "null when the customer service did not answer"})
    sale = fields.Nested(SaleBadge, allow_none=True, metadata={
        "description": "Customers only, with `customers.sale_info.view`"})
    installation = fields.Nested(InstallBadge, allow_none=True, metadata={
        "description": "Customers only, with `customers.installation_info.view`"})
    status_boxes = fields.List(fields.Nested(StatusBox), metadata={"description": "Customers only (not leads)"})
    tags = fields.List(fields.Nested(SummaryTag), allow_none=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(allow_none=True), metadata={
        "description": "Per tab: open notes & tickets, contacts, files, tags, properties, appointments; "
                       "null when hidden or unavailable"})
    hidden = fields.List(fields.String(), metadata={"description": "Tabs you may not view"})
    # marshmallow types Schema.partial (a load option) as a bool; a field of that name is what it declares here
    partial = fields.Boolean(metadata={"description": "True when a service did not answer"})  # type: ignore[assignment]
    unavailable = fields.List(fields.String(), metadata={"description": "Services that did not answer"})


def _refusal(reply) -> Problem:
    """The customer service's refusal (403, 404), re-issued as the gateway's own problem."""
    body = reply.body if isinstance(reply.body, dict) else {}
    extras = {key: body[key] for key in PROBLEM_EXTRAS if key in body}
    return Problem(reply.status, body.get("detail"), title=body.get("title"), type=body.get("type", "about:blank"),
                   errors=body.get("errors"), **extras)


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


def _status_boxes(record: dict, properties_reply) -> list[dict]:
    """Seed 001: one coloured box per category of the customer's current state (not for leads)."""
    if record.get("kind") != "customer":
        return []
    if record.get("archived_at"):
        account = "archived"
    elif record.get("canceled"):
        account = "canceled"
    else:
        account = "active" if record.get("active", True) else "inactive"
    boxes = [{"category": "account", "status": account}]
    items = properties_reply.body.get("items") if properties_reply is not None and \
        isinstance(properties_reply.body, dict) else None
    if isinstance(items, list):
        statuses = {item.get("monitoring_status") for item in items if isinstance(item, dict)}
        monitoring = next((s for s in ("active", "suspended", "cancelled") if s in statuses), "none")
        boxes.append({"category": "monitoring", "status": monitoring})
    if "installed" in record:
        boxes.append({"category": "installation", "status": "installed" if record["installed"] else "not_installed"})
    if record.get("funding_status"):
        boxes.append({"category": "funding", "status": record["funding_status"]})
    return boxes


@blp.route("/<int:customer_id>/summary")
class Summary(MethodView):
    @requires("customers.view")
    @blp.response(200, CustomerSummary)
    @blp.alt_response(403, description="The record is in a location you may not view")
    @blp.alt_response(404, description="No such customer or lead")
    def get(self, customer_id):
        """The record's header: identity, sale and install badges, status boxes and a count per tab.

        Each part comes from the service that owns it, asked with your identity: a tab you may not
        view has no count and is listed in `hidden`. When a service is down, its parts are empty
        and `partial` is true, with the service named in `unavailable`.
        """
        base = f"/api/v1/customers/{customer_id}"
        calls: dict[str, tuple[str, str, dict[str, Any]]] = {"record": ("customer", base, {})}
        calls |= {tab: (service, f"{base}/{path}", {"per_page": 100 if tab == "properties" else 1, **params})
                  for tab, (service, path, params) in TABS.items()}
        replies = _fetch_all(calls)
        unavailable = sorted({exc.service for exc in replies.values() if isinstance(exc, ServiceUnavailable)})
        record_reply = replies["record"]
        record = None
        if not isinstance(record_reply, ServiceUnavailable):
            if not record_reply.ok:
                raise _refusal(record_reply)
            record = record_reply.body
        counts: dict[str, int | None] = {}
        hidden: list[str] = []
        for tab in TABS:
            reply = replies[tab]
            if isinstance(reply, ServiceUnavailable) or reply.status == 404:
                counts[tab] = None
            elif reply.status in (401, 403):
                counts[tab] = None
                hidden.append(tab)
            else:
                counts[tab] = reply.body.get("total") if reply.ok and isinstance(reply.body, dict) else None
        properties_reply = replies["properties"] if not isinstance(replies["properties"], ServiceUnavailable) and \
            replies["properties"].ok else None
        summary: dict[str, Any] = {
                   "customer": None, "sale": None, "installation": None, "status_boxes": [], "tags": None,
                   "counts": counts, "hidden": hidden, "partial": bool(unavailable), "unavailable": unavailable}
        if record is not None:
            summary["customer"] = {key: record.get(key) for key in IDENTITY_FIELDS}
            if "sold_by" in record and record.get("kind") == "customer":
                summary["sale"] = {"sale_date": record.get("sale_date"), "sold_by": record.get("sold_by")}
            if "install_tech" in record and record.get("kind") == "customer":
                summary["installation"] = {"install_date": record.get("install_date"),
                                           "install_tech": record.get("install_tech"),
                                           "installed": record.get("installed", False)}
            summary["status_boxes"] = _status_boxes(record, properties_reply)
            summary["tags"] = record.get("tags")
        return summary
