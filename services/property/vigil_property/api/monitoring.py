"""Central stations' signals and account statuses: the property's signal log and the unmatched list."""

from __future__ import annotations

from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, paginate
from vigil_shared.web import request_session

from .. import commands, monitoring
from ..schemas import (
    DriftReportSchema,
    DriftRequestSchema,
    MonitoringBatchReceiptSchema,
    MonitoringBatchSchema,
    MonitoringMessageSchema,
    ResolveSignalSchema,
    SignalArgs,
    SignalPageSchema,
    SignalSchema,
    UnmatchedPageSchema,
)
from .common import context, current_runtime, loaded, property_rule

blp = Blueprint(
    "monitoring",
    __name__,
    url_prefix="/api/v1",
    description="Signals and account statuses from central stations (see docs/integrations.md)",
)


@blp.route("/monitoring/messages", methods=["POST"])
@blp.create("integrations.manage", SignalSchema, body=MonitoringMessageSchema)
def receive_message(data):
    """Internal: a verified central station's signal or account status, forwarded by the gateway.

    Central stations post to the gateway's ``/integrations/{id}/signals`` and
    ``/integrations/{id}/account-status``; a call here from anyone but a Vigil service is refused."""
    return commands.receive_monitoring(context(), data), 201


@blp.route("/monitoring/messages/batch", methods=["POST"])
@blp.action("integrations.manage", MonitoringBatchReceiptSchema, body=MonitoringBatchSchema)
def receive_messages(data):
    """Internal: several verified messages at once, in one transaction (the gateway groups what arrives
    together). A message id already logged for its station is not logged again, so a batch can be re-sent."""
    return {"property_ids": commands.receive_monitoring_batch(context(), current_runtime().db, data["items"])}


@blp.route("/properties/<int:property_id>/signals", methods=["GET"])
@blp.read("properties.view", SignalPageSchema, rule=property_rule, query=SignalArgs)
def property_signals(property_id, page, per_page, kind=None, since=None):
    """The property's signal log, newest first, with whether its test signal is overdue."""
    session = request_session()
    result = paginate(session, monitoring.signals_of(loaded().property.id, kind, since), page, per_page)
    return result.body() | monitoring.test_state(session, loaded().property.id), 200, result.headers()


@blp.route("/monitoring/unmatched", methods=["GET"])
@blp.read("integrations.manage", UnmatchedPageSchema, query=PaginationArgs)
def unmatched(page, per_page):
    """Signals for account numbers no property has, oldest first, for an operator to resolve."""
    return paginate(request_session(), monitoring.unmatched(), page, per_page).answer()


@blp.route("/monitoring/unmatched/<int:signal_id>/resolve")
class Resolve(MethodView):
    @blp.action("integrations.manage", SignalSchema, body=ResolveSignalSchema)
    def post(self, data, signal_id):
        """Attach an unmatched signal to the property it belongs to (needs ``properties.modify`` there)."""
        return commands.resolve_signal(context(), signal_id, data["property_id"])


@blp.route("/monitoring/drift", methods=["POST"])
@blp.action("integrations.manage", DriftReportSchema, body=DriftRequestSchema)
def drift(data):
    """Internal: compares a central station's account list (sent by the gateway's drift check) with
    the properties: missing either side, status or address mismatch. Changes nothing."""
    return commands.station_drift(context(), data["central_station"], data["accounts"], data["monitoring_company_id"])
