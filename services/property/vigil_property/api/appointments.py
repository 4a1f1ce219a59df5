"""Appointments: technician and sales visits at properties (appointments.view / appointments.modify)."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import check_if_match, etag_of
from vigil_shared.idempotency import idempotent
from vigil_shared.web import current_identity, request_session, requires

from .. import appointments as domain
from ..schemas import (AppointmentCreateSchema, AppointmentListArgs, AppointmentPageSchema, AppointmentPatchSchema,
                       AppointmentSchema, CancelSchema, CompleteSchema, RelatedAppointmentListArgs)
from . import scope

blp = Blueprint("appointments", __name__, url_prefix="/api/v1", description="Technician and sales appointments")


def _body(appointment, customer_id: int) -> dict:
    return {column.key: getattr(appointment, column.key) for column in appointment.__table__.columns
            if column.key != "row_version"} | {"customer_id": customer_id}


def _answer(appointment, customer_id: int, status: int = 200, **headers):
    return _body(appointment, customer_id), status, {"ETag": etag_of(appointment.id, appointment.row_version),
                                                     **headers}


def _page(result):
    customers = domain.customers_of(request_session(), (a.property_id for a in result.items))
    body = result.body()
    body["items"] = [_body(a, customers.get(a.property_id)) for a in result.items]
    return body, 200, result.headers()


def _in_scope(appointment_id: int, permission: str):
    session = request_session()
    appointment = domain.get_appointment(session, appointment_id)
    scoped = scope.property_in_scope(session, appointment.property_id, permission)
    return appointment, scoped


@blp.route("/appointments")
class Appointments(MethodView):
    @requires("appointments.view")
    @blp.arguments(AppointmentListArgs, location="query", as_kwargs=True)
    @blp.response(200, AppointmentPageSchema)
    def get(self, page, per_page, **filters):
        """Appointments in your locations, e.g. a technician's day: `?technician=12&from=…&to=…`."""
        locations = current_identity().location_filter("appointments.view")
        return _page(domain.list_appointments(request_session(), locations=locations, page=page, per_page=per_page,
                                              **filters))


@blp.route("/properties/<int:property_id>/appointments")
class PropertyAppointments(MethodView):
    @requires("appointments.view")
    @blp.arguments(RelatedAppointmentListArgs, location="query", as_kwargs=True)
    @blp.response(200, AppointmentPageSchema)
    def get(self, property_id, page, per_page, **filters):
        """A property's appointments, soonest first."""
        session = request_session()
        scope.property_in_scope(session, property_id, "appointments.view")
        return _page(domain.list_appointments(session, locations=None, property_id=property_id, page=page,
                                              per_page=per_page, **filters))

    @requires("appointments.modify")
    @idempotent
    @blp.arguments(AppointmentCreateSchema)
    @blp.response(201, AppointmentSchema)
    @blp.alt_response(409, description="The technician is booked at that time, or the property is inactive")
    def post(self, data, property_id):
        """Schedule a visit; a technician cannot have two overlapping appointments."""
        session = request_session()
        scoped = scope.property_in_scope(session, property_id, "appointments.modify")
        created = domain.schedule(session, scoped.property, data, scope.actor())
        session.commit()
        return _answer(created, scoped.property.customer_id, 201,
                       Location=url_for("appointments.AppointmentItem", appointment_id=created.id))


@blp.route("/customers/<int:customer_id>/appointments")
class CustomerAppointments(MethodView):
    @requires("appointments.view")
    @blp.arguments(RelatedAppointmentListArgs, location="query", as_kwargs=True)
    @blp.response(200, AppointmentPageSchema)
    def get(self, customer_id, page, per_page, **filters):
        """The appointments at all of a customer's properties."""
        session = request_session()
        location_id = scope.customer_location(session, customer_id)
        if location_id is not None:
            scope.require_at("appointments.view", location_id)
        locations = current_identity().location_filter("appointments.view")
        return _page(domain.list_appointments(session, locations=locations, customer_id=customer_id, page=page,
                                              per_page=per_page, **filters))


@blp.route("/appointments/<int:appointment_id>")
class AppointmentItem(MethodView):
    @requires("appointments.view")
    @blp.response(200, AppointmentSchema)
    def get(self, appointment_id):
        """Read one appointment."""
        appointment, scoped = _in_scope(appointment_id, "appointments.view")
        return _answer(appointment, scoped.property.customer_id)

    @requires("appointments.modify")
    @blp.arguments(AppointmentPatchSchema)
    @blp.response(200, AppointmentSchema)
    @blp.alt_response(409, description="Not scheduled any more, the technician is booked, or the property is inactive")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def patch(self, changes, appointment_id):
        """Reschedule, reassign or annotate a scheduled appointment."""
        appointment, scoped = _in_scope(appointment_id, "appointments.modify")
        check_if_match(appointment.id, appointment.row_version)
        session = request_session()
        domain.reschedule(session, scoped.property, appointment, changes, scope.actor())
        session.commit()
        return _answer(appointment, scoped.property.customer_id)


@blp.route("/appointments/<int:appointment_id>/cancel")
class AppointmentCancellation(MethodView):
    @requires("appointments.modify")
    @idempotent
    @blp.arguments(CancelSchema)
    @blp.response(200, AppointmentSchema)
    @blp.alt_response(409, description="The appointment is not scheduled any more")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def post(self, data, appointment_id):
        """Cancel a scheduled appointment, with a reason. It stays listed as cancelled."""
        appointment, scoped = _in_scope(appointment_id, "appointments.modify")
        check_if_match(appointment.id, appointment.row_version)
        session = request_session()
        domain.cancel(session, appointment, data["reason"], scope.actor())
        session.commit()
        return _answer(appointment, scoped.property.customer_id)


@blp.route("/appointments/<int:appointment_id>/complete")
class AppointmentCompletion(MethodView):
    @requires("appointments.modify")
    @idempotent
    @blp.arguments(CompleteSchema, required=False)
    @blp.response(200, AppointmentSchema)
    @blp.alt_response(409, description="The appointment is not scheduled any more")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def post(self, data, appointment_id):
        """Mark a scheduled appointment done, optionally with notes."""
        appointment, scoped = _in_scope(appointment_id, "appointments.modify")
        check_if_match(appointment.id, appointment.row_version)
        session = request_session()
        domain.complete(session, appointment, (data or {}).get("notes"), scope.actor())
        session.commit()
        return _answer(appointment, scoped.property.customer_id)
