"""Contacts of a record: `contacts.view` to read, `contacts.modify` to write, at the record's location.

The gateway's technician lookup reads the emergency contacts through the internal
`GET /api/v1/internal/customers/{id}/emergency-contacts` (``api/internal.py``) with a service
identity holding `contacts.view`.
"""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import Page, etag_headers, paginate
from vigil_shared.web import current_identity, note_confidential_read, request_session

from .. import commands
from .. import contacts as domain
from ..child_schemas import ContactCreateSchema, ContactListArgs, ContactPageSchema, ContactPatchSchema, ContactSchema
from .common import A_CUSTOMER, cipher, context, if_match, loaded, tab_rule

blp = Blueprint(
    "customer_contacts",
    __name__,
    url_prefix=f"{A_CUSTOMER}/contacts",
    description="Emergency and other contacts of a customer or lead",
)


def shown(customer, contacts):
    """The contacts as the caller may see them; unmasked passcodes are reported for the audit log."""
    items, unmasked = [], []
    for contact in contacts:
        body, passcode_shown = domain.present(contact, current_identity(), customer.location_id, cipher())
        items.append(body)
        if passcode_shown:
            unmasked.append(contact.id)
    for contact_id in unmasked:
        note_confidential_read("customer_contact", contact_id, ["passcode"])
    return items


@blp.route("")
class Contacts(MethodView):
    @blp.read("contacts.view", ContactPageSchema, rule=tab_rule, query=ContactListArgs)
    def get(self, customer_id, page, per_page, type=None):
        """Emergency contacts in call order, then the others by name; `type` keeps one kind."""
        session, customer = request_session(), loaded()
        result = paginate(session, domain.list_statement(customer_id, type), page, per_page)
        listed = Page(shown(customer, result.items), result.page, result.per_page, result.total)
        return listed.body(), 200, listed.headers()

    @blp.create("contacts.modify", ContactSchema, rule=tab_rule, body=ContactCreateSchema)
    def post(self, data, customer_id):
        """Add a contact. An emergency contact goes last in call order unless `call_priority` says where."""
        customer = loaded()
        contact = commands.add_contact(context(), customer, data)
        return (
            shown(customer, [contact])[0],
            201,
            etag_headers(
                contact,
                Location=url_for("customer_contacts.ContactItem", customer_id=customer_id, contact_id=contact.id),
            ),
        )


PASSCODE = "Changing a saved passcode needs `confidential.installation_codes.modify`"


@blp.route("/<int:contact_id>")
class ContactItem(MethodView):
    @blp.read("contacts.view", ContactSchema, rule=tab_rule)
    def get(self, customer_id, contact_id):
        """One contact; its passcode is masked unless you may see installation codes."""
        customer = loaded()
        contact = domain.get_contact(request_session(), customer_id, contact_id)
        return shown(customer, [contact])[0], 200, etag_headers(contact)

    @blp.change("contacts.modify", ContactSchema, rule=tab_rule, body=ContactPatchSchema, forbidden=PASSCODE)
    def patch(self, changes, customer_id, contact_id):
        """Edit a contact; a new `call_priority` moves it in the call order."""
        customer = loaded()
        contact = commands.update_contact(context(if_match()), customer, contact_id, changes)
        request_session().refresh(contact)
        return shown(customer, [contact])[0], 200, etag_headers(contact)

    @blp.remove("contacts.modify", rule=tab_rule, stale="`If-Match` names an older version; nothing was deleted")
    def delete(self, customer_id, contact_id):
        """Remove a contact; the emergency contacts after it move up one place."""
        commands.delete_contact(context(if_match()), loaded(), contact_id)
        return None
