"""The property service's part of the archive preview (docs/archive.md)."""

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
    url_prefix="/api/v1/archive-items/property",
    description="What archiving customers would cancel",
)


class ArchiveItemSchema(Schema):
    type = fields.String(metadata={"example": "appointment"})
    id = fields.Integer()
    customer_id = fields.Integer()
    property_id = fields.Integer()
    kind = fields.String(metadata={"description": "tech or sale"})
    starts_at = fields.String(metadata={"format": "date-time"})
    link = fields.String()


class ArchiveItemsSchema(Schema):
    items = fields.List(fields.Nested(ArchiveItemSchema))


@blp.route("")
class ArchiveItems(MethodView):
    @blp.read("customers.archive", ArchiveItemsSchema, query=ArchiveItemsArgs, query_kwargs=False)
    def get(self, args):
        """The future appointments archiving these customers would cancel (the gateway's
        `GET /customers/{id}/archive-preview` gathers this from every participant)."""
        return {"items": commands.archive_items(context(), sorted(set(args["customer_id"])))}
