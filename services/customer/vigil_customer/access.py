"""Who may see and change which part of a record.

Every field of the record belongs to a *section*; a section decides the permission needed to see
it and to change it, per kind of record. Confidential fields add the confidential-field
permissions on top, and the credit score fields need the right to run credit. Views and domain
code ask this module only, so the rules live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil_shared.errors import FORBIDDEN, Problem
from vigil_shared.identity import Identity

from . import registry

# Sections, kinds and each field's place are declared once, in the registry.
CUSTOMER, LEAD, KINDS = registry.CUSTOMER, registry.LEAD, registry.KINDS
CONTACT, SALE, INSTALLATION, LEAD_INFO, GENERAL = (
    registry.CONTACT,
    registry.SALE,
    registry.INSTALLATION,
    registry.LEAD_INFO,
    registry.GENERAL,
)

# Not fields of the record but named by clients: sent in a body, they are refused as read-only.
BOOKKEEPING = frozenset({name for name, _, _ in registry.SYSTEM if name not in registry.BY_NAME} | {"version", "tags"})
# Shown but never written through the record's PATCH (computed, or owned by another workflow).
READ_ONLY = BOOKKEEPING | {f.name for f in registry.FIELDS if f.writable != registry.ALWAYS}
# Accepted when the record is created, read-only afterwards.
CREATE_ONLY = frozenset(f.name for f in registry.FIELDS if f.writable == registry.ON_CREATE)
# field: confidential category (``confidential.<category>.view`` / ``.modify``)
CONFIDENTIAL = {f.name: f.confidential for f in registry.FIELDS if f.confidential}
SCORE_FIELDS = frozenset(f.name for f in registry.FIELDS if f.credit)
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
    declared = registry.BY_NAME.get(field)
    return declared.section(kind) if declared is not None else None


def section_view_permission(field: str, kind: str) -> str | None:
    """The permission beyond the record's own view needed to see ``field`` (its section's), if any."""
    section = section_of(field, kind)
    return SECTION_PERMISSIONS[section][0] if section is not None else None


def fields_of(kind: str) -> tuple[str, ...]:
    return registry.fields_of(kind)


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

        Whoever may edit contact information may enter an SSN where none exists yet;
        changing a saved one needs the confidential-modify permission. The same holds for the
        birthdate and the installation codes.
        """
        section = section_of(field, self.kind)
        assert section is not None, f"{field} is not a field of a {self.kind}"
        if field == "location_id":
            return (
                None
                if self.can_record("create" if creating else "modify")
                else base_permission(self.kind, "create" if creating else "modify")
            )
        needed = [base_permission(self.kind, "create" if creating else "modify")]
        _, modify = SECTION_PERMISSIONS[section]
        if modify and not (creating and section == CONTACT):
            needed.append(modify)
        view, _ = SECTION_PERMISSIONS[section]
        if view:
            needed.append(view)
        modify_confidential = confidential_modify_permission(field)
        if modify_confidential and has_saved_value:
            needed.append(modify_confidential)
        if field in SCORE_FIELDS:
            needed.append(SCORE_PERMISSION)
        for permission in needed:
            if not self.can(permission):
                return permission
        return None


def visible_field(access: Access, field: str) -> bool:
    """Whether the caller sees ``field``'s value unmasked on a record with ``access``."""
    return access.can_view_field(field) and access.can_see_confidential(field)


def missing_view_permission(access: Access, field: str) -> str:
    """The permission the caller lacks to see ``field`` unmasked with ``access`` (it must lack one)."""
    if not access.can_record("view"):
        return base_permission(access.kind, "view")
    section = section_of(field, access.kind)
    if section is not None and not access.can_view_section(section):
        return SECTION_PERMISSIONS[section][0] or base_permission(access.kind, "view")
    return confidential_view_permission(field) or base_permission(access.kind, "view")


def unmasked_by_move(source: Access, target: Access, fields_with_values) -> dict[str, str]:
    """Fields holding a value the caller may not see where the record is now but would see at
    ``target`` (a move to another office, a conversion): ``{field: permission missing at the source}``.

    An operation never reveals a value the caller cannot see at its source, so a move that would
    unmask one is refused instead (dropping the value would lose the customer's data).
    """
    return {
        name: missing_view_permission(source, name)
        for name in fields_with_values
        if not visible_field(source, name) and visible_field(target, name)
    }


def move_forbidden(refusals: dict[str, str]) -> Problem:
    """403 for a move that would show the caller values hidden from them where the record is now."""
    first = next(iter(refusals.values()))
    return Problem(
        403,
        "Moving this record would show you values you may not see where it is now: "
        + ", ".join(sorted(refusals))
        + ". Someone who may see them there can move it.",
        type=FORBIDDEN,
        permission=first,
        errors={
            field: [f"Needs the '{permission}' permission where the record is now."]
            for field, permission in refusals.items()
        },
    )


def field_forbidden(refusals: dict[str, str]) -> Problem:
    """403 naming every field the caller may not set, and the permission each one needs."""
    first = next(iter(refusals.values()))
    return Problem(
        403,
        "You may not set some of these fields: " + ", ".join(sorted(refusals)) + ".",
        type=FORBIDDEN,
        permission=first,
        errors={field: [f"Needs the '{permission}' permission."] for field, permission in refusals.items()},
    )
