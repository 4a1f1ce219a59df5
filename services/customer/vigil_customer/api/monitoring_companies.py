"""The monitoring-company catalog: what a customer's *Monitored By* names.

Company-wide and naming no customer, so any signed-in caller may read it (the Monitored By picker
needs it); `catalogs.manage` changes it. Deactivate a company rather than delete it: customers keep
naming it.
"""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import etag_headers, paginate
from vigil_shared.idempotency import idempotent
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import request_session, requires

from .. import commands, monitoring
from ..child_schemas import (
    MonitoringCompanyCreateSchema,
    MonitoringCompanyListArgs,
    MonitoringCompanyPageSchema,
    MonitoringCompanyPatchSchema,
    MonitoringCompanySchema,
)
from .common import context, if_match

blp = Blueprint(
    "monitoring_companies", __name__, url_prefix="/api/v1/monitoring-companies", description="Monitoring companies"
)


@blp.route("")
class MonitoringCompanies(MethodView):
    @requires(AUTHENTICATED)
    @blp.arguments(MonitoringCompanyListArgs, location="query", as_kwargs=True)
    @blp.response(200, MonitoringCompanyPageSchema)
    def get(self, page, per_page, active=None):
        """The catalog by name; `is_adt` companies run the ADT PreCheck at customer create."""
        result = paginate(request_session(), monitoring.catalog_statement(active), page, per_page)
        return result.body(), 200, result.headers()

    @requires("catalogs.manage")
    @idempotent
    @blp.arguments(MonitoringCompanyCreateSchema)
    @blp.response(201, MonitoringCompanySchema)
    @blp.alt_response(409, description="A company with this name (in any case) exists")
    def post(self, data):
        """Add a monitoring company."""
        company = commands.create_monitoring_company(context(), data)
        return (
            company,
            201,
            etag_headers(
                company, Location=url_for("monitoring_companies.MonitoringCompanyItem", company_id=company.id)
            ),
        )


@blp.route("/<int:company_id>")
class MonitoringCompanyItem(MethodView):
    @requires(AUTHENTICATED)
    @blp.response(200, MonitoringCompanySchema)
    def get(self, company_id):
        """One monitoring company."""
        company = monitoring.get_company(request_session(), company_id)
        return company, 200, etag_headers(company)

    @requires("catalogs.manage")
    @blp.arguments(MonitoringCompanyPatchSchema)
    @blp.response(200, MonitoringCompanySchema)
    @blp.alt_response(409, description="Another company has this name")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def patch(self, changes, company_id):
        """Rename, mark as ADT, enable the PreCheck order, or deactivate a company."""
        company = commands.update_monitoring_company(context(if_match()), company_id, changes)
        return company, 200, etag_headers(company)
