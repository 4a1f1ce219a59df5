"""The MMR rate catalog (simple list and breakout picker) and the rate assigned to a customer."""

from __future__ import annotations

from datetime import date

from flask import url_for
from flask.views import MethodView

from vigil_shared.commands import etag_of
from vigil_shared.db import utcnow
from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import request_session

from .. import commands, rates
from ..schemas import (
    AssignmentPutSchema,
    AssignmentSchema,
    RateCreateSchema,
    RateListArgs,
    RatePageSchema,
    RatePatchSchema,
    RateSchema,
)
from .common import context, customer_rule, if_match, live_customer_rule, loaded

blp = Blueprint("rates", __name__, url_prefix="/api/v1", description="Monthly monitoring rates (MMR)")


def _today() -> date:
    return utcnow().date()


@blp.route("/rates")
class Rates(MethodView):
    @blp.read(AUTHENTICATED, RatePageSchema, query=RateListArgs)
    def get(self, page, per_page, line, **filters):
        """The catalog, cheapest first. Simple mode lists it; breakout mode's picker filters it by `total`
        (or `total_min`/`total_max`) and by line items (`line=monitoring:2999`, `line=warranty`). Each rate
        says whether it is `mismatched` (its breakdown no longer matches the MMR items). A catalog, like the
        system kinds: any signed-in user reads it."""
        commands.read_settings(context())  # the company's settings exist before the catalog is read
        query = rates.RateQuery(lines=tuple(line), **filters)
        result, settings = rates.list_rates(request_session(), query, page, per_page)
        return result.answer(lambda rate: rates.rate_body(rate, settings))

    @blp.create("catalogs.manage", RateSchema, body=RateCreateSchema)
    def post(self, data):
        """Add a rate: its line items must name exactly the company's MMR items; the total is their sum."""
        rate, settings = commands.create_rate(context(), data)
        location = url_for("rates.RateItem", rate_id=rate.id)
        return rates.rate_body(rate, settings), 201, etag_headers(rate, Location=location)


AMOUNTS_FIXED = "The amounts of a rate customers are billed cannot change"


@blp.route("/rates/<int:rate_id>")
class RateItem(MethodView):
    @blp.read(AUTHENTICATED, RateSchema)
    def get(self, rate_id):
        """One rate of the catalog (any signed-in user: the customer page shows the rate it names)."""
        settings = commands.read_settings(context())
        rate = rates.get_rate(request_session(), rate_id)
        return rates.rate_body(rate, settings), 200, etag_headers(rate)

    @blp.change("catalogs.manage", RateSchema, body=RatePatchSchema, conflict=AMOUNTS_FIXED)
    def patch(self, changes, rate_id):
        """Rename or retire a rate (`active: false`); its amounts change only while no customer has it."""
        rate, settings = commands.update_rate(context(if_match()), rate_id, changes)
        return rates.rate_body(rate, settings), 200, etag_headers(rate)


def _assignment_answer(customer_id: int, status: int = 200):
    session = request_session()
    assignment = rates.assignment_of(session, customer_id)
    body = rates.assignment_body(session, customer_id, assignment, _today())
    version = assignment.version if assignment is not None else 0
    return body, status, {"ETag": etag_of(customer_id, version)}


MISMATCHED = "The rate is mismatched and not already this customer's"


@blp.route("/customers/<int:customer_id>/rate")
class CustomerRate(MethodView):
    @blp.read("billing.view", AssignmentSchema, rule=customer_rule)
    def get(self, customer_id):
        """The customer's monthly rate (`rate` null when none), contract term and months remaining."""
        commands.read_settings(context())
        return _assignment_answer(customer_id)

    @blp.change(
        "billing.manage", AssignmentSchema, rule=live_customer_rule, body=AssignmentPutSchema, conflict=MISMATCHED
    )
    def put(self, data, customer_id):
        """Give the customer a rate with its contract term. A mismatched rate is refused (409) unless the
        customer already has it."""
        commands.assign_rate(context(if_match()), loaded(), data)
        return _assignment_answer(customer_id)

    @blp.remove("billing.manage", rule=customer_rule)
    def delete(self, customer_id):
        """Clear the customer's rate (the picker's Clear)."""
        commands.clear_rate(context(if_match()), loaded())
        return None, 204
