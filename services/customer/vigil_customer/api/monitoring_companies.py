"""The monitoring-company catalog: what a customer's *Monitored By* names.

Company-wide and naming no customer, so any signed-in caller may read it (the Monitored By picker
needs it); `catalogs.manage` changes it. Deactivate a company rather than delete it: customers keep
naming it.
"""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers, paginate
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import request_session

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


NAME_EXISTS = "A company with this name (in any case) exists"
NAME_TAKEN = "Another company has this name"


@blp.route("")
class MonitoringCompanies(MethodView):
    @blp.read(AUTHENTICATED, MonitoringCompanyPageSchema, query=MonitoringCompanyListArgs)
    def get(self, page, per_page, active=None):
        """The catalog by name; `is_adt` companies run the ADT PreCheck at customer create."""
        result = paginate(request_session(), monitoring.catalog_statement(active), page, per_page)
        return result.body(), 200, result.headers()

    @blp.create("catalogs.manage", MonitoringCompanySchema, body=MonitoringCompanyCreateSchema, conflict=NAME_EXISTS)
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
    @blp.read(AUTHENTICATED, MonitoringCompanySchema)
    def get(self, company_id):
        """One monitoring company."""
        company = monitoring.get_company(request_session(), company_id)
        return company, 200, etag_headers(company)

    @blp.change("catalogs.manage", MonitoringCompanySchema, body=MonitoringCompanyPatchSchema, conflict=NAME_TAKEN)
    def patch(self, changes, company_id):
        """Rename, mark as ADT, enable the PreCheck order, or deactivate a company."""
        company = commands.update_monitoring_company(context(if_match()), company_id, changes)
        return company, 200, etag_headers(company)
