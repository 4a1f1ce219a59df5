"""The record as one caller may see it: hidden sections left out, confidential values masked.

Every response carrying customer data is built here, so a masked value looks the same wherever it
appears and every unmasked confidential value is reported for the gateway's audit log.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from vigil_shared.crypto import FieldCipher
from vigil_shared.identity import Identity
from vigil_shared.web import note_confidential_read

from . import custom_fields, record, registry, search
from .access import CONFIDENTIAL, Access, fields_of, section_of

ALWAYS = registry.ALWAYS_SHOWN
LIST_FIELDS = tuple(registry.output_fields(listed_only=True))


def customer_view(
    session: Session, customer, identity: Identity, cipher: FieldCipher, *, audit: bool = True, tags: list | None = None
) -> dict:
    """``tags``: the record's tags when the caller knows them (none on a record just created), else read."""
    access = Access(identity, customer.kind, customer.location_id)
    body = {name: getattr(customer, name) for name in ALWAYS}
    unmasked = []
    sections: dict[str | None, bool] = {}  # access.can_view_field, asked once per section
    for name in fields_of(customer.kind):
        section = section_of(name, customer.kind)
        visible = sections.get(section)
        if visible is None:
            visible = sections[section] = access.can_view_field(name)
        if not visible:
            continue
        value_type = registry.BY_NAME[name].type
        if isinstance(value_type, registry.Values):
            body[name] = custom_fields.visible_values(session, customer.kind, getattr(customer, name))
            continue
        if isinstance(value_type, registry.Derived) and value_type.compute:  # from fields of its own section
            body[name] = value_type.compute(customer)
            continue
        value = record.read(customer, name, cipher)
        if name in CONFIDENTIAL:
            if isinstance(value, date):
                value = value.isoformat()
            if access.can_see_confidential(name):
                if value is not None:
                    unmasked.append(name)
            else:
                value = record.masked(name, value)
        body[name] = value
    if access.can("tags.view"):
        body["tags"] = tags if tags is not None else search.tags_of(session, [customer.id]).get(customer.id, [])
    if audit and unmasked:
        note_confidential_read("customer", customer.id, unmasked)
    return body


def list_item(customer, tags: list[dict] | None) -> dict:
    """The compact row of the list: no section-restricted and no confidential field."""
    item = {name: getattr(customer, name) for name in LIST_FIELDS}
    if tags is not None:
        item["tags"] = tags
    return item
