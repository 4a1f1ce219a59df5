"""The property service's part of the archive preview (docs/archive.md)."""

from __future__ import annotations

from marshmallow import Schema, fields

from vigil_shared.endpoints import archive_items_blueprint

from .. import commands
from .common import context


class ArchiveItemSchema(Schema):
    type = fields.String(metadata={"example": "appointment"})
    id = fields.Integer()
    customer_id = fields.Integer()
    property_id = fields.Integer()
    kind = fields.String(metadata={"description": "tech or sale"})
    starts_at = fields.String(metadata={"format": "date-time"})
    link = fields.String()


def cancelled_by_archiving(customer_ids: list[int]):
    """The future appointments archiving these customers would cancel (the gateway's
    `GET /customers/{id}/archive-preview` gathers this from every participant)."""
    return commands.archive_items(context(), customer_ids)


blp = archive_items_blueprint(__name__, "property", "ArchiveItems", ArchiveItemSchema, cancelled_by_archiving)
