"""The billing service's part of the archive preview (docs/archive.md)."""

from __future__ import annotations

from marshmallow import Schema, fields

from vigil_shared.endpoints import archive_items_blueprint

from .. import commands
from .common import context


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


def cancelled_by_archiving(customer_ids: list[int]):
    """The active recurring invoices and scheduled payments archiving these customers would cancel
    (the gateway's `GET /customers/{id}/archive-preview` gathers this from every participant)."""
    return commands.archive_items(context(), customer_ids)


blp = archive_items_blueprint(
    __name__, "billing", "BillingArchiveItems", BillingArchiveItemSchema, cancelled_by_archiving
)
