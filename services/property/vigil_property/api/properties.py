from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import PaginationArgs, etag_of
from vigil_shared.web import request_session, requires

from .. import customer_client
from .. import properties as domain
from ..schemas import PropertyCreateSchema, PropertyPageSchema, PropertySchema

blp = Blueprint("properties", __name__, url_prefix="/api/v1", description="Monitored properties of customers")


def _headers(item, **extra) -> dict:
    return {"ETag": etag_of(item.id, item.version), **extra}


@blp.route("/customers/<int:customer_id>/properties")
class CustomerProperties(MethodView):
    @requires("properties.view")
    @blp.arguments(PaginationArgs, location="query", as_kwargs=True)
    @blp.response(200, PropertyPageSchema)
    def get(self, customer_id, page, per_page):
        """List a customer's properties, 20 a page, oldest first."""
        result = domain.list_properties(request_session(), customer_id, page=page, per_page=per_page)
        return result.body(), 200, result.headers()

    @requires("properties.create")
    @blp.arguments(PropertyCreateSchema)
    @blp.response(201, PropertySchema)
    @blp.alt_response(409, description="The account number is already used by another property")
    @blp.alt_response(503, description="The customer service could not be asked whether the customer exists")
    def post(self, data, customer_id):
        """Add a property to a customer. An unknown or deleted customer answers 422."""
        session = request_session()
        created = domain.create_property(session, customer_id, data,
                                         customer_exists=customer_client.customer_exists)
        session.commit()
        return created, 201, _headers(created, Location=url_for("properties.PropertyItem", property_id=created.id))


@blp.route("/properties/<int:property_id>")
class PropertyItem(MethodView):
    @requires("properties.view")
    @blp.response(200, PropertySchema)
    def get(self, property_id):
        """Read one property; the `ETag` header is what `If-Match` expects."""
        found = domain.get_property(request_session(), property_id)
        return found, 200, _headers(found)
