"""Who may see and change which part of a record (issue 3 on the customer page of seed 001).

Every field of the record belongs to a *section*; a section decides the permission needed to see
it and to change it, per kind of record. Confidential fields add the confidential-field
permissions on top, and the credit score fields need the right to run credit. Views and domain
code ask this module only, so the rules live in one place.
"""
from __future__ import annotations

from dataclasses import dataclass

from vigil_shared.errors import FORBIDDEN, Problem
from vigil_shared.identity import Identity

CUSTOMER, LEAD = "customer", "lead"
KINDS = (CUSTOMER, LEAD)

CONTACT, SALE, INSTALLATION, LEAD_INFO, GENERAL = "contact", "sale", "installation", "lead", "general"

CONTACT_FIELDS = (
    "first_name", "last_name", "birthdate", "language", "address_line1", "address_line2", "city", "state", "zip",
    "county", "cross_street", "primary_phone", "work_phone", "cell_phone", "other_phone", "email",
    "best_time_to_contact", "ssn", "spouse", "credit_score", "credit_tracking_number", "account_type",
    "account_class", "business_name", "business_contact", "dba_name",
)
SALE_FIELDS = (
    "sale_date", "sold_by", "trainee_trainer", "lead_rep", "call_center_rep", "adt_number", "adt_serial_man",
    "account_number", "mmr", "mmr_a_la_carte", "currency", "monitoring_plan", "canceled", "cancel_date",
    "cancel_reason", "source", "source_campaign", "discount_affiliate", "discount_affiliate_member_number",
    "monitored_by", "interactive_services_provider", "adt_system_type", "contract_term_months",
    "contract_months_remaining", "activation_fee", "warranty_term_months", "dealer_number", "collections_date",
    "funding_status", "funded_date", "parent_customer_id",
)
SERVICE_FIELDS = ("two_way_voice", "cellular_backup", "guard_response", "maintenance", "invoicing", "aarp",
                  "tellular", "pulse")
INSTALLATION_FIELDS = (
    "installation_appointment_id", "install_date", "install_tech", "install_tech_reports_to",
    "confirmation_number", "receiver_number", "installed", "abort_code", *SERVICE_FIELDS,
)
LEAD_FIELDS = ("source", "source_campaign", "callback_at", "lead_disposition", "callcenter_comments",
               "lead_status", "lead_rep", "lead_comments", "call_center_rep")
GENERAL_FIELDS = ("location_id", "active", "notes", "description", "company", "custom_fields")

# Shown but never written through the record's PATCH (computed, or owned by another workflow).
READ_ONLY = frozenset({
    "id", "kind", "created_at", "updated_at", "created_by", "version", "archived_at", "converted_at",
    "last_activity_at", "credit_grade", "contract_months_remaining", "funding_status", "funded_date",
    "install_tech_reports_to", "call_center_rep", "tags",
})
# Accepted when the record is created, read-only afterwards.
CREATE_ONLY = frozenset({"call_center_rep"})

CONFIDENTIAL = {"ssn": "ssn", "birthdate": "birthdate", "confirmation_number": "installation_codes",
                "receiver_number": "installation_codes", "abort_code": "installation_codes"}
SCORE_FIELDS = frozenset({"credit_score", "credit_tracking_number"})
SCORE_PERMISSION = "credit.create"

SECTION_PERMISSIONS = {
    # section: (view permission or None = the record's own view, modify permission or None = record's modify)
    CONTACT: (None, "customers.contact_info.modify"),
    SALE: ("customers.sale_info.view", "customers.sale_info.modify"),
    INSTALLATION: ("customers.installation_info.view", "customers.installation_info.modify"),
    LEAD_INFO: (None, None),
    GENERAL: (None, None),
}


def base_permission(kind: str, action: str) -> str:
    """``customers.<action>`` for customers, ``leads.<action>`` for leads."""
    return f"{'leads' if kind == LEAD else 'customers'}.{action}"


def section_of(field: str, kind: str) -> str | None:
    """The card a field sits on for this kind of record; None when the kind has no such field."""
    if kind == LEAD:
        if field in LEAD_FIELDS:
            return LEAD_INFO
        if field in CONTACT_FIELDS:
            return CONTACT
        if field in GENERAL_FIELDS:
            return GENERAL
        return None
    if field in SALE_FIELDS:
        return SALE
    if field in INSTALLATION_FIELDS:
        return INSTALLATION
    if field in CONTACT_FIELDS:
        return CONTACT
    if field in GENERAL_FIELDS:
        return GENERAL
    if field in LEAD_FIELDS:  # lead tracking kept after conversion, read-only on a customer
        return LEAD_INFO
    return None


def fields_of(kind: str) -> tuple[str, ...]:
    sections = (*CONTACT_FIELDS, *GENERAL_FIELDS) + ((*LEAD_FIELDS,) if kind == LEAD else
                                                     (*SALE_FIELDS, *INSTALLATION_FIELDS))
    return tuple(dict.fromkeys(sections))


def confidential_view_permission(field: str) -> str | None:
    category = CONFIDENTIAL.get(field)
    return f"confidential.{category}.view" if category else None


def confidential_modify_permission(field: str) -> str | None:
    category = CONFIDENTIAL.get(field)
    return f"confidential.{category}.modify" if category else None


@dataclass(frozen=True)
class Access:
    """What one caller may do with one record (its kind and location)."""

    identity: Identity
    kind: str
    location_id: int | None

    def can(self, permission: str) -> bool:
        return self.identity.can(permission, self.location_id)

    def can_record(self, action: str) -> bool:
        return self.can(base_permission(self.kind, action))

    def can_view_section(self, section: str) -> bool:
        view, _ = SECTION_PERMISSIONS[section]
        return self.can_record("view") and (view is None or self.can(view))

    def can_view_field(self, field: str) -> bool:
        section = section_of(field, self.kind)
        return section is not None and self.can_view_section(section)

    def can_see_confidential(self, field: str) -> bool:
        permission = confidential_view_permission(field)
        return permission is None or self.can(permission)

    def write_refusal(self, field: str, *, creating: bool, has_saved_value: bool) -> str | None:
        """The permission missing to write ``field`` here, or None when the caller may write it.

        Seed 001: whoever may edit contact information may enter an SSN where none exists yet;
        changing a saved one needs the confidential-modify permission. The same holds for the
        birthdate and the installation codes.
        """
        section = section_of(field, self.kind)
        if field == "location_id":
            return None if self.can_record("create" if creating else "modify") else base_permission(
                self.kind, "create" if creating else "modify")
        needed = [base_permission(self.kind, "create" if creating else "modify")]
        _, modify = SECTION_PERMISSIONS[section]
        if modify and not (creating and section == CONTACT):
            needed.append(modify)
        view, _ = SECTION_PERMISSIONS[section]
        if view:
            needed.append(view)
        if field in CONFIDENTIAL and has_saved_value:
            needed.append(confidential_modify_permission(field))
        if field in SCORE_FIELDS:
            needed.append(SCORE_PERMISSION)
        for permission in needed:
            if not self.can(permission):
                return permission
        return None


def visible_field(access: "Access", field: str) -> bool:
    """Whether the caller sees ``field``'s value unmasked on a record with ``access``."""
    return access.can_view_field(field) and access.can_see_confidential(field)


def missing_view_permission(access: "Access", field: str) -> str:
    """The permission the caller lacks to see ``field`` unmasked with ``access`` (it must lack one)."""
    if not access.can_record("view"):
        return base_permission(access.kind, "view")
    section = section_of(field, access.kind)
    if section is not None and not access.can_view_section(section):
        return SECTION_PERMISSIONS[section][0]
    return confidential_view_permission(field) or base_permission(access.kind, "view")


def unmasked_by_move(source: "Access", target: "Access", fields_with_values) -> dict[str, str]:
    """Fields holding a value the caller may not see where the record is now but would see at
    ``target`` (a move to another office, a conversion): ``{field: permission missing at the source}``.

    An operation never reveals a value the caller cannot see at its source, so a move that would
    unmask one is refused instead (dropping the value would lose the customer's data).
    """
    return {name: missing_view_permission(source, name) for name in fields_with_values
            if not visible_field(source, name) and visible_field(target, name)}


def move_forbidden(refusals: dict[str, str]) -> Problem:
    """403 for a move that would show the caller values hidden from them where the record is now."""
    first = next(iter(refusals.values()))
    return Problem(403, "Moving this record would show you values you may not see where it is now: "
                        + ", ".join(sorted(refusals)) + ". Someone who may see them there can move it.",
                   type=FORBIDDEN, permission=first,
                   errors={field: [f"Needs the '{permission}' permission where the record is now."]
                           for field, permission in refusals.items()})


def field_forbidden(refusals: dict[str, str]) -> Problem:
    """403 naming every field the caller may not set, and the permission each one needs."""
    first = next(iter(refusals.values()))
    return Problem(403, "You may not set some of these fields: " + ", ".join(sorted(refusals)) + ".",
                   type=FORBIDDEN, permission=first,
                   errors={field: [f"Needs the '{permission}' permission."] for field, permission in refusals.items()})
