"""Operations (``vigil_shared.operations``) and the archive preview, gathered from the services.

``GET /api/v1/operations`` lists the caller's operations from every service that runs some
(:data:`~vigil_shared.operations.OPERATION_OWNERS`), newest first; ``GET /operations/{id}`` is routed
to the owner named by the id (:mod:`vigil_gateway.routing`). ``GET /customers/{id}/archive-preview``
asks the customer service who would be archived, then every archive participant
(:data:`~vigil_shared.messaging.contracts.ARCHIVE_PARTICIPANTS`) what it would cancel for them.
"""

from __future__ import annotations

from flask import g
from flask.views import MethodView
from marshmallow import Schema, fields

from vigil_shared.endpoints import Blueprint
from vigil_shared.errors import UNAVAILABLE, Problem
from vigil_shared.http import Page
from vigil_shared.messaging.contracts import ARCHIVE_PARTICIPANTS
from vigil_shared.operations import OPERATION_OWNERS, OperationListArgs, OperationPageSchema
from vigil_shared.permissions import AUTHENTICATED

from ..upstream import Reply, ServiceUnavailable, call_service, problem_of

blp = Blueprint("operations", __name__, url_prefix="/api/v1", description="Long-running operations")


def _unavailable(service: str) -> Problem:
    return Problem(
        503,
        f"The {service} service is unavailable. Try again shortly.",
        type=UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def _passed_on(reply: Reply) -> Problem:
    """A service's refusal, answered as it gave it."""
    body = reply.body if isinstance(reply.body, dict) else {}
    known = {"type", "title", "status", "detail", "instance", "errors", "request_id"}
    return problem_of(reply, **{k: v for k, v in body.items() if k not in known})


def _get(service: str, path: str, params: dict | None = None) -> Reply:
    try:
        return call_service(service, "GET", path, params=params, identity=g.identity)
    except ServiceUnavailable:
        raise _unavailable(service) from None


@blp.route("/operations")
class Operations(MethodView):
    @blp.read(AUTHENTICATED, OperationPageSchema, query=OperationListArgs)
    def get(self, page, per_page, **filters):
        """The operations you started (archive, unarchive; later imports, exports, credit pulls),
        newest first, from every service that runs them. Filter by `status` and `kind`; read one
        with `GET /operations/{id}` for its steps' results and errors."""
        wanted = page * per_page
        items: list[dict] = []
        total = 0
        for service in OPERATION_OWNERS:
            reply = _get(service, "/api/v1/operations", {"page": 1, "per_page": min(100, wanted), **filters})
            if not reply.ok or not isinstance(reply.body, dict):
                raise _passed_on(reply)
            items.extend(reply.body["items"])
            total += reply.body["total"]
        items.sort(key=lambda o: (o["created_at"], o["id"]), reverse=True)
        out = Page(items=items[(page - 1) * per_page : wanted], page=page, per_page=per_page, total=total)
        return out.body(), 200, out.headers()


class PreviewItemSchema(Schema):
    type = fields.String(metadata={"description": "appointment, recurring_invoice, scheduled_payment"})
    id = fields.Integer()
    participant = fields.String(metadata={"description": "The service that owns the item"})
    kind = fields.String(metadata={"description": "tech/sale for an appointment"})
    starts_at = fields.String(metadata={"format": "date-time"})
    property_id = fields.Integer()
    next_date = fields.String(allow_none=True, metadata={"format": "date", "description": "A recurring invoice's"})
    due_date = fields.String(metadata={"format": "date", "description": "A scheduled payment's"})
    amount = fields.Integer(metadata={"description": "A scheduled payment's, in minor units"})
    link = fields.String()


class PreviewCustomerSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    items = fields.List(fields.Nested(PreviewItemSchema))


class ArchivePreviewSchema(Schema):
    customer = fields.Nested(PreviewCustomerSchema)
    sub_customers = fields.List(
        fields.Nested(PreviewCustomerSchema), metadata={"description": "Unarchived; archived along (cascade)"}
    )
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "Items by type"})
    nothing_affected = fields.Boolean(metadata={"description": "True when archiving cancels nothing"})
    participants = fields.List(fields.String(), metadata={"description": "The services asked"})


PREVIEW_REFUSED = {
    403: "You may not archive customers",
    404: "No such customer, or one you may not archive",
    409: "A lead, or already archived",
    503: "A service that holds the customer's items did not answer",
}


@blp.route("/customers/<int:customer_id>/archive-preview")
class ArchivePreview(MethodView):
    @blp.read("customers.archive", ArchivePreviewSchema, answers=PREVIEW_REFUSED)
    def get(self, customer_id):
        """What archiving this customer would affect, from every service: future appointments (tech
        and sale), active recurring invoices and future scheduled payments, for the customer and
        each unarchived sub-customer (archived along with it). `nothing_affected` says when there is
        nothing to cancel."""
        targets = _get("customer", f"/api/v1/customers/{customer_id}/archive-targets")
        if not targets.ok or not isinstance(targets.body, dict):
            raise _passed_on(targets)
        people = [targets.body["customer"], *targets.body["sub_customers"]]
        by_id = {p["id"]: {**p, "items": []} for p in people}
        counts: dict[str, int] = {}
        for participant in ARCHIVE_PARTICIPANTS:
            reply = _get(participant, f"/api/v1/archive-items/{participant}", {"customer_id": list(by_id)})
            if not reply.ok or not isinstance(reply.body, dict):
                raise _passed_on(reply)
            for item in reply.body["items"]:
                owner = by_id.get(item.get("customer_id"))
                if owner is None:
                    continue
                owner["items"].append(
                    {**{k: v for k, v in item.items() if k != "customer_id"}, "participant": participant}
                )
                counts[item["type"]] = counts.get(item["type"], 0) + 1
        customer, *subs = (by_id[p["id"]] for p in people)
        return {
            "customer": customer,
            "sub_customers": subs,
            "counts": counts,
            "nothing_affected": not counts and not subs,
            "participants": list(ARCHIVE_PARTICIPANTS),
        }
