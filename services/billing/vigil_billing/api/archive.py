"""The billing service's part of the archive preview (docs/archive.md)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from vigil_shared.archived import ArchiveItemsArgs
from vigil_shared.endpoints import Blueprint

from .. import commands
from .common import context

blp = Blueprint(
    "archive_items",
    __name__,
    url_prefix="/api/v1/archive-items/billing",
    description="What archiving customers would cancel",
)


class BillingArchiveItemSchema(Schema):
    type = fields.String(metadata={"description": "recurring_invoice or scheduled_payment"})
    id = fields.Integer()
    customer_id = fields.Integer()
    next_date = fields.String(
        allow_none=True, metadata={"format": "date", "description": "A recurring invoice's next period"}
    )
    interval_months = fields.Integer(metadata={"description": "A recurring invoice's interval"})
    due_date = fields.String(metadata={"format": "date", "description": "A scheduled payment's date"})
    amount = fields.Integer(metadata={"description": "A scheduled payment's amount, in minor units"})
    link = fields.String()


class BillingArchiveItemsSchema(Schema):
    items = fields.List(fields.Nested(BillingArchiveItemSchema))


@blp.route("")
class BillingArchiveItems(MethodView):
    @blp.read("customers.archive", BillingArchiveItemsSchema, query=ArchiveItemsArgs, query_kwargs=False)
    def get(self, args):
        """The active recurring invoices and scheduled payments archiving these customers would cancel
        (the gateway's `GET /customers/{id}/archive-preview` gathers this from every participant)."""
        return {"items": commands.archive_items(context(), sorted(set(args["customer_id"])))}
