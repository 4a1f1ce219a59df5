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

from . import custom_fields, record, search, validation
from .access import CONFIDENTIAL, READ_ONLY, Access, fields_of

ALWAYS = ("id", "kind", "location_id", "created_at", "updated_at", "created_by", "converted_at", "archived_at",
          "last_activity_at")
LIST_FIELDS = ("id", "kind", "location_id", "first_name", "last_name", "business_name", "dba_name", "email",
               "primary_phone", "city", "state", "zip", "account_type", "active", "archived_at", "created_at",
               "last_activity_at")


def customer_view(session: Session, customer, identity: Identity, cipher: FieldCipher, *,
                  audit: bool = True) -> dict:
    access = Access(identity, customer.kind, customer.location_id)
    body = {name: getattr(customer, name) for name in ALWAYS}
    unmasked = []
    for name in fields_of(customer.kind):
        if not access.can_view_field(name):
            continue
        if name == "custom_fields":
            body[name] = custom_fields.visible_values(session, customer.kind, customer.custom_fields)
            continue
        if name in READ_ONLY and name not in ("call_center_rep", "funding_status", "funded_date",
                                              "install_tech_reports_to"):
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
    if "credit_score" in body:
        body["credit_grade"] = validation.credit_grade(customer.credit_score)
    if "contract_term_months" in body:
        body["contract_months_remaining"] = validation.months_remaining(customer.contract_term_months,
                                                                         customer.sale_date)
    if access.can("tags.view"):
        body["tags"] = search.tags_of(session, [customer.id]).get(customer.id, [])
    if audit and unmasked:
        note_confidential_read("customer", customer.id, unmasked)
    return body


def list_item(customer, tags: list[dict] | None) -> dict:
    """The compact row of the list: no section-restricted and no confidential field."""
    item = {name: getattr(customer, name) for name in LIST_FIELDS}
    if tags is not None:
        item["tags"] = tags
    return item
