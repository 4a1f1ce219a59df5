"""The tag catalog and the tags on a record.

The catalog is company-wide and names no customer, so any signed-in caller may read it (tag
pickers need it); `catalogs.manage` changes it. Tags on a record need `tags.view`/`tags.modify`
at the record's location.
"""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.catalog import CatalogSchemas, Operation, page_response
from vigil_shared.endpoints import Blueprint
from vigil_shared.http import paginate
from vigil_shared.web import request_session

from .. import commands
from .. import tags as domain
from ..child_schemas import ApplyTagSchema, TagCreateSchema, TagListArgs, TagPageSchema, TagPatchSchema, TagSchema
from .common import A_CUSTOMER, catalog_routes, context, loaded, tab_rule

catalog = Blueprint("tags", __name__, url_prefix="/api/v1/tags", description="The tag catalog")
applied = Blueprint(
    "customer_tags", __name__, url_prefix=f"{A_CUSTOMER}/tags", description="Tags applied to a customer or lead"
)

TAG_EXISTS = "A tag with this name (in any case) exists"


catalog_routes(
    catalog,
    ("TagCatalog", "TagItem", "tag_id"),
    CatalogSchemas(TagSchema, TagCreateSchema, TagPatchSchema, TagListArgs, TagPageSchema),
    list=Operation(
        "The company's tags by name; `q` matches the start of a name.",
        lambda session, page, per_page, q=None: page_response(
            paginate(session, domain.catalog_statement(q), page, per_page)
        ),
    ),
    create=Operation("Add a tag to the catalog.", commands.create_tag, conflict=TAG_EXISTS),
    read=Operation("One tag of the catalog.", domain.get_tag),
    update=Operation(
        "Rename or recolour a tag; records carrying it show the change at once.", commands.update_tag, TAG_EXISTS
    ),
    delete=Operation("Remove a tag from the catalog and from every record carrying it.", commands.delete_tag),
)


@applied.route("")
class CustomerTags(MethodView):
    @applied.read("tags.view", TagPageSchema, rule=tab_rule, query=TagListArgs)
    def get(self, customer_id, page, per_page, q=None):
        """The tags on this record, by name."""
        result = paginate(request_session(), domain.applied_statement(customer_id), page, per_page)
        return result.body(), 200, result.headers()

    @applied.create("tags.modify", TagSchema, rule=tab_rule, body=ApplyTagSchema)
    @applied.alt_response(200, schema=TagSchema, description="The record already had this tag")
    def post(self, data, customer_id):
        """Apply a catalog tag (by `tag_id` or `name`) to the record."""
        tag, added = commands.apply_tag(context(), loaded(), tag_id=data.get("tag_id"), name=data.get("name"))
        return (
            tag,
            201 if added else 200,
            {"Location": url_for("customer_tags.CustomerTagItem", customer_id=customer_id, tag_id=tag.id)},
        )


@applied.route("/<int:tag_id>")
class CustomerTagItem(MethodView):
    @applied.operation("tags.modify", status=204, rule=tab_rule)
    def delete(self, customer_id, tag_id):
        """Remove a tag from the record."""
        commands.remove_tag(context(), loaded(), tag_id)
        return None
