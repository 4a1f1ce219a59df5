from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import check_if_match, etag_of
from vigil_shared.idempotency import idempotent
from vigil_shared.web import request_outbox, request_session, requires

from .. import customers as domain
from ..schemas import CustomerCreateSchema, CustomerListArgs, CustomerPageSchema, CustomerPatchSchema, CustomerSchema

blp = Blueprint("customers", __name__, url_prefix="/api/v1/customers", description="Customers and leads")


def _headers(customer, **extra) -> dict:
    return {"ETag": etag_of(customer.id, customer.version), **extra}


@blp.route("")
class Customers(MethodView):
    @requires("customers.view")
    @blp.arguments(CustomerListArgs, location="query", as_kwargs=True)
    @blp.response(200, CustomerPageSchema)
    def get(self, page, per_page, sort, q=None, active=None):
        """List customers, 20 a page, filtered by `q` (name or email) and `active`."""
        result = domain.list_customers(request_session(), page=page, per_page=per_page, q=q, active=active, sort=sort)
        return result.body(), 200, result.headers()

    @requires("customers.create")
    @idempotent
    @blp.arguments(CustomerCreateSchema)
    @blp.response(201, CustomerSchema)
    @blp.alt_response(409, description="The email address is already used by another customer")
    def post(self, data):
        """Create a customer. The email address, when given, is unique (case-insensitive)."""
        session = request_session()
        customer = domain.create_customer(session, request_outbox(), data)
        session.commit()
        return customer, 201, _headers(customer, Location=url_for("customers.CustomerItem", customer_id=customer.id))


@blp.route("/<int:customer_id>")
class CustomerItem(MethodView):
    @requires("customers.view")
    @blp.response(200, CustomerSchema)
    def get(self, customer_id):
        """Read one customer; the `ETag` header is what `If-Match` expects."""
        customer = domain.get_customer(request_session(), customer_id)
        return customer, 200, _headers(customer)

    @requires("customers.modify")
    @blp.arguments(CustomerPatchSchema)
    @blp.response(200, CustomerSchema)
    @blp.alt_response(409, description="The email address is already used by another customer")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def patch(self, changes, customer_id):
        """Change some fields of a customer."""
        session = request_session()
        customer = domain.get_customer(session, customer_id)
        check_if_match(customer.id, customer.version)
        domain.update_customer(session, request_outbox(), customer, changes)
        session.commit()
        return customer, 200, _headers(customer)

    @requires("customers.delete")
    @blp.response(204)
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was deleted")
    def delete(self, customer_id):
        """Delete a customer and, through the `customer.deleted` event, everything other services hold for it."""
        session = request_session()
        customer = domain.get_customer(session, customer_id)
        check_if_match(customer.id, customer.version)
        domain.delete_customer(session, request_outbox(), customer)
        session.commit()
        return None
