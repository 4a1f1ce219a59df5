"""Central-station integrations: their management, and the signed endpoints they post signals and
account statuses to (no bearer token: each message carries a Standard Webhooks signature)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

from flask import g, request, url_for
from flask.views import MethodView
from marshmallow import ValidationError
from sqlalchemy import select

from vigil_shared.endpoints import Blueprint
from vigil_shared.errors import Problem, flatten_messages, validation_problem
from vigil_shared.http import PaginationArgs, paginate

from .. import integrations
from .. import webhook_commands as hooks_commands
from ..context import database, db_session, intake, settings
from ..models import Integration
from ..versions import etag_headers
from ..webhook_schemas import (
    DriftSchema,
    IncomingReceiptSchema,
    IncomingSignalSchema,
    IncomingStatusSchema,
    IntegrationCreatedSchema,
    IntegrationCreateSchema,
    IntegrationPageSchema,
    IntegrationPatchSchema,
    IntegrationSchema,
    RotatedSecretSchema,
    RotateSecretSchema,
)
from .common import at_version, context, if_match, record_item
from .webhooks import hook_settings

blp = Blueprint(
    "integrations",
    __name__,
    url_prefix="/api/v1",
    description="Central stations: signed signals and account statuses in (see docs/integrations.md)",
)


STATION_REACH_REFUSED = (
    "A station's secret changes properties in every office: it needs `properties.modify` at every location too"
)


@blp.route("/integrations")
class Integrations(MethodView):
    @blp.read("integrations.manage", IntegrationPageSchema, query=PaginationArgs, query_kwargs=False)
    def get(self, args):
        """List central-station integrations (never their secrets)."""
        result = paginate(db_session(), select(Integration).order_by(Integration.id), args["page"], args["per_page"])
        return result.body(), 200, result.headers()

    @blp.create(
        "integrations.manage", IntegrationCreatedSchema, body=IntegrationCreateSchema, forbidden=STATION_REACH_REFUSED
    )
    def post(self, data):
        """Add a central station; its signing secret is in this response only."""
        record = hooks_commands.create_integration(context(), data, settings(), hook_settings())
        location = url_for("integrations.IntegrationItem", integration_id=record.id)
        return record, 201, etag_headers(record, Location=location)


IntegrationItem = blp.route("/integrations/<int:integration_id>")(
    record_item(
        blp,
        "IntegrationItem",
        "integrations.manage",
        (IntegrationSchema, IntegrationPatchSchema),
        (
            hooks_commands.get_integration,
            lambda ctx, integration_id, changes: hooks_commands.update_integration(
                ctx, integration_id, changes, hook_settings()
            ),
            hooks_commands.delete_integration,
        ),
        (
            "Read one integration.",
            "Rename, change the rate limit, disable or enable.",
            "Remove an integration: its messages are refused from now on.",
        ),
    )
)


@blp.route("/integrations/<int:integration_id>/rotate-secret", methods=["POST"])
@at_version(
    blp,
    "integrations.manage",
    RotateSecretSchema,
    RotatedSecretSchema,
    once=True,
    refusals={403: STATION_REACH_REFUSED},
)
def rotate_integration_secret(data, integration_id):
    """A new signing secret, shown once; messages signed with the old one are accepted for ``overlap_seconds``."""
    secret, until = hooks_commands.rotate_integration_secret(
        context(if_match()), integration_id, data["overlap_seconds"], settings()
    )
    return {"secret": secret, "previous_secret_until": until}


@blp.route("/integrations/<int:integration_id>/drift", methods=["GET"])
@blp.read("integrations.manage", DriftSchema)
def drift_report(integration_id):
    """The last drift report: the station's account list against Vigil's properties (accounts missing
    either side, status or address mismatch). The gateway worker checks every
    ``VIGIL_DRIFT_CHECK_INTERVAL`` seconds."""
    return hooks_commands.get_integration(context(), integration_id)


@blp.route("/integrations/<int:integration_id>/drift-check", methods=["POST"])
@blp.start("integrations.manage", DriftSchema)
def drift_check(integration_id):
    """Check for drift now (in the worker); poll ``GET .../drift`` until ``checked_at`` passes ``requested_at``."""
    record = hooks_commands.request_drift_check(context(), integration_id)
    return record, 202, {"Location": url_for("integrations.drift_report", integration_id=record.id)}


STATIONS = integrations.Stations()


# --- what central stations post --------------------------------------------------------------------


SIGNAL_SCHEMA, STATUS_SCHEMA = IncomingSignalSchema(), IncomingStatusSchema()  # stateless: shared by requests


def _read_integration(integration_id: int) -> Integration | None:
    return db_session().get(Integration, integration_id)


def _receive(integration_id: int, kind: str) -> dict:
    with intake().arriving() as submit:  # the group being gathered waits for this request's message
        return _verified(integration_id, kind, submit)


def _verified(integration_id: int, kind: str, submit: Callable[[integrations.Message], int | None]) -> dict:
    read = partial(_read_integration, integration_id)
    cipher = settings().webhook_cipher
    station = STATIONS.get(integration_id, read, cipher)
    if station is None:
        raise integrations.refused("No such integration, or it is disabled.")
    body, headers = request.get_data(), request.headers
    try:
        message_id = integrations.verify(station.keys, body, headers)
    except Problem:
        station = STATIONS.get(integration_id, read, cipher, fresh=True)  # its secret may have just been rotated
        if station is None:
            raise integrations.refused("No such integration, or it is disabled.") from None
        message_id = integrations.verify(station.keys, body, headers)
    database().close_request_session()  # no connection is held while the intake writes
    try:
        payload = json.loads(body)
    except ValueError:
        raise Problem(400, "The body is not JSON.") from None
    schema = SIGNAL_SCHEMA if kind == "signal" else STATUS_SCHEMA
    try:
        data = schema.load(payload if isinstance(payload, dict) else {})
    except ValidationError as error:
        raise validation_problem(flatten_messages(error.messages)) from None
    forward = {
        "central_station": station.name,
        "monitoring_company_id": station.monitoring_company_id,
        "message_id": message_id,
        "account_number": data["account_number"],
        "kind": data["type"] if kind == "signal" else "status",
        "status": data.get("status"),
        "zone": data.get("zone"),
        "user": data.get("user"),
        "description": data.get("description"),
        "occurred_at": data["occurred_at"].isoformat() if data.get("occurred_at") else None,
    }
    # counted against the rate limit once signed and valid: unsigned floods cannot use up the allowance
    property_id = submit(
        integrations.Message(
            integration_id=integration_id,
            station=station.name,
            per_minute=station.per_minute,
            message_id=message_id,
            forward=forward,
            request_id=g.get("request_id", ""),
        )
    )
    return {"status": "received", "matched": property_id is not None}


@blp.route("/integrations/<int:integration_id>/signals", methods=["POST"])
@blp.doc(security=[])
@blp.response(200, IncomingReceiptSchema)
def incoming_signal(integration_id):
    """A central station's signal (alarm, trouble, restore, test, open, close), signed with the
    integration's secret (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``). Refused (401) when the signature does not match or the timestamp is more
    than 5 minutes off; a ``webhook-id`` already received answers 409 and changes nothing."""
    return _receive(integration_id, "signal")


@blp.route("/integrations/<int:integration_id>/account-status", methods=["POST"])
@blp.doc(security=[])
@blp.response(200, IncomingReceiptSchema)
def incoming_status(integration_id):
    """A central station's account status (active, suspended, cancelled, in_test), signed like a signal.
    The property with this account number changes its monitoring status (with history and events)."""
    return _receive(integration_id, "status")
