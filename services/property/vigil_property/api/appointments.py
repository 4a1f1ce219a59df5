"""Appointments: technician and sales visits at properties (appointments.view / appointments.modify)."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers
from vigil_shared.web import current_identity, request_session

from .. import appointments as domain
from .. import commands, properties
from ..schemas import (
    AppointmentCreateSchema,
    AppointmentListArgs,
    AppointmentPageSchema,
    AppointmentPatchSchema,
    AppointmentSchema,
    CancelSchema,
    CompleteSchema,
    RelatedAppointmentListArgs,
)
from .common import appointment_rule, context, customer_rule, if_match, loaded, property_rule

blp = Blueprint("appointments", __name__, url_prefix="/api/v1", description="Technician and sales appointments")


def _body(appointment, customer_id: int | None, location_id: int | None) -> dict:
    return {
        column.key: getattr(appointment, column.key)
        for column in appointment.__table__.columns
        if column.key != "row_version"
    } | {"customer_id": customer_id, "location_id": location_id}


def _answer(appointment, scoped: commands.Scoped, status: int = 200, **headers):
    return (
        _body(appointment, scoped.property.customer_id, scoped.location_id),
        status,
        etag_headers(appointment, version_attr="row_version", **headers),
    )


def _page(result):
    session = request_session()
    customers = domain.customers_of(session, (a.property_id for a in result.items))
    locations = properties.locations_of(session, customers.values())

    def render(appointment):
        customer_id = customers.get(appointment.property_id)
        return _body(appointment, customer_id, locations.get(customer_id) if customer_id is not None else None)

    return result.answer(render)


@blp.route("/appointments")
class Appointments(MethodView):
    @blp.read("appointments.view", AppointmentPageSchema, query=AppointmentListArgs)
    def get(self, page, per_page, **filters):
        """Appointments in your locations, e.g. a technician's day: `?technician=12&from=…&to=…`."""
        locations = current_identity().location_filter("appointments.view")
        return _page(
            domain.list_appointments(request_session(), locations=locations, page=page, per_page=per_page, **filters)
        )


BOOKED = "The technician is booked at that time, or the property is inactive"


@blp.route("/properties/<int:property_id>/appointments")
class PropertyAppointments(MethodView):
    @blp.read("appointments.view", AppointmentPageSchema, rule=property_rule, query=RelatedAppointmentListArgs)
    def get(self, property_id, page, per_page, **filters):
        """A property's appointments, soonest first."""
        return _page(
            domain.list_appointments(
                request_session(), locations=None, property_id=property_id, page=page, per_page=per_page, **filters
            )
        )

    @blp.create(
        "appointments.modify", AppointmentSchema, rule=property_rule, body=AppointmentCreateSchema, conflict=BOOKED
    )
    def post(self, data, property_id):
        """Schedule a visit; a technician cannot have two overlapping appointments."""
        scoped = loaded()
        created = commands.schedule(context(), scoped, data)
        return _answer(
            created, scoped, 201, Location=url_for("appointments.AppointmentItem", appointment_id=created.id)
        )


@blp.route("/customers/<int:customer_id>/appointments")
class CustomerAppointments(MethodView):
    @blp.read("appointments.view", AppointmentPageSchema, rule=customer_rule, query=RelatedAppointmentListArgs)
    def get(self, customer_id, page, per_page, **filters):
        """The appointments at all of a customer's properties."""
        locations = current_identity().location_filter("appointments.view")
        return _page(
            domain.list_appointments(
                request_session(), locations=locations, customer_id=customer_id, page=page, per_page=per_page, **filters
            )
        )


UNMOVABLE = "Not scheduled any more, the technician is booked, or the property is inactive"


@blp.route("/appointments/<int:appointment_id>")
class AppointmentItem(MethodView):
    @blp.read("appointments.view", AppointmentSchema, rule=appointment_rule)
    def get(self, appointment_id):
        """Read one appointment."""
        return _answer(*loaded())

    @blp.change(
        "appointments.modify", AppointmentSchema, rule=appointment_rule, body=AppointmentPatchSchema, conflict=UNMOVABLE
    )
    def patch(self, changes, appointment_id):
        """Reschedule, reassign or annotate a scheduled appointment."""
        appointment, scoped = loaded()
        return _answer(commands.reschedule(context(if_match()), scoped, appointment, changes), scoped)


ENDED = "The appointment is not scheduled any more"


@blp.route("/appointments/<int:appointment_id>/cancel")
class AppointmentCancellation(MethodView):
    @blp.transition("appointments.modify", AppointmentSchema, rule=appointment_rule, body=CancelSchema, conflict=ENDED)
    def post(self, data, appointment_id):
        """Cancel a scheduled appointment, with a reason. It stays listed as cancelled."""
        appointment, scoped = loaded()
        return _answer(commands.cancel(context(if_match()), appointment, data["reason"]), scoped)


@blp.route("/appointments/<int:appointment_id>/complete")
class AppointmentCompletion(MethodView):
    @blp.transition(
        "appointments.modify", AppointmentSchema, rule=appointment_rule, optional_body=CompleteSchema, conflict=ENDED
    )
    def post(self, data, appointment_id):
        """Mark a scheduled appointment done, optionally with notes."""
        appointment, scoped = loaded()
        return _answer(commands.complete(context(if_match()), appointment, (data or {}).get("notes")), scoped)
