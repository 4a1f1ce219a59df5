"""The permission catalog: every right a role can grant, and whether it is granted per location.

Location-scoped permissions are held per office location (a user may modify customers in Ottawa
and only view them in Toronto); global ones concern the whole company (users, roles, webhooks).
Roles are named sets of these names; services check them against the signed identity.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCATION = "location"
GLOBAL = "global"


@dataclass(frozen=True)
class Permission:
    name: str
    scope: str
    group: str
    description: str


def _p(name: str, scope: str, group: str, description: str) -> Permission:
    return Permission(name, scope, group, description)


CATALOG: tuple[Permission, ...] = (
    # customers and leads
    _p("customers.view", LOCATION, "Customers", "See customer records"),
    _p("customers.create", LOCATION, "Customers", "Create customers"),
    _p("customers.modify", LOCATION, "Customers", "Edit customer records"),
    _p("customers.delete", LOCATION, "Customers", "Delete customers and everything attached to them"),
    _p("leads.view", LOCATION, "Leads", "See lead records"),
    _p("leads.create", LOCATION, "Leads", "Create leads"),
    _p("leads.modify", LOCATION, "Leads", "Edit leads, convert them to customers"),
    _p("leads.delete", LOCATION, "Leads", "Delete leads"),
    _p("customers.archive", LOCATION, "Customers", "Archive a customer"),
    _p("customers.unarchive", LOCATION, "Customers", "Restore an archived customer"),
    # sections of the customer page
    _p("customers.contact_info.modify", LOCATION, "Customer page", "Edit the contact information section"),
    _p("customers.sale_info.view", LOCATION, "Customer page", "See the sale information section"),
    _p("customers.sale_info.modify", LOCATION, "Customer page", "Edit the sale information section"),
    _p("customers.installation_info.view", LOCATION, "Customer page", "See the installation & equipment section"),
    _p("customers.installation_info.modify", LOCATION, "Customer page", "Edit the installation & equipment section"),
    # confidential fields
    _p("confidential.ssn.view", LOCATION, "Confidential fields", "See SSNs unmasked"),
    _p("confidential.ssn.modify", LOCATION, "Confidential fields", "Change a saved SSN"),
    _p("confidential.birthdate.view", LOCATION, "Confidential fields", "See birthdates unmasked"),
    _p("confidential.birthdate.modify", LOCATION, "Confidential fields", "Change birthdates"),
    _p(
        "confidential.installation_codes.view",
        LOCATION,
        "Confidential fields",
        "See confirmation, receiver and abort codes, account PINs and system passwords unmasked",
    ),
    _p(
        "confidential.installation_codes.modify",
        LOCATION,
        "Confidential fields",
        "Change confirmation, receiver and abort codes, account PINs and system passwords",
    ),
    # around the record
    _p("properties.view", LOCATION, "Properties", "See properties, systems and equipment"),
    _p("properties.create", LOCATION, "Properties", "Add properties"),
    _p("properties.modify", LOCATION, "Properties", "Edit, deactivate, transfer properties"),
    _p("tech_portal.use", LOCATION, "Properties", "Look up a property on site with account number and PIN"),
    _p("appointments.view", LOCATION, "Appointments", "See appointments"),
    _p("appointments.modify", LOCATION, "Appointments", "Schedule, change and cancel appointments"),
    _p("notes.view", LOCATION, "Notes & tickets", "See notes and tickets"),
    _p("notes.modify", LOCATION, "Notes & tickets", "Write notes and tickets"),
    _p("files.view", LOCATION, "Files", "See and download files"),
    _p("files.modify", LOCATION, "Files", "Upload and delete files"),
    _p("contacts.view", LOCATION, "Contacts", "See emergency and other contacts"),
    _p("contacts.modify", LOCATION, "Contacts", "Edit contacts"),
    _p("tags.view", LOCATION, "Tags", "See tags on records"),
    _p("tags.modify", LOCATION, "Tags", "Apply and remove tags"),
    _p("history.view", LOCATION, "History", "See the change history of records"),
    _p("equipment.view", LOCATION, "Equipment", "See installed equipment"),
    _p("equipment.modify", LOCATION, "Equipment", "Record and edit installed equipment"),
    _p("billing.view", LOCATION, "Billing", "See invoices, payments and billing methods"),
    _p("billing.manage", LOCATION, "Billing", "Assign rates, create and void invoices, set up recurring billing"),
    _p("payments.create", LOCATION, "Billing", "Record payments, charge billing methods, refund"),
    _p("billing_methods.manage", LOCATION, "Billing", "Add and remove credit cards and bank accounts (tokens only)"),
    _p("credit.view", LOCATION, "Credit", "See credit checks"),
    _p("credit.create", LOCATION, "Credit", "Run credit checks and enter manual scores"),
    _p("credit.apply", LOCATION, "Credit", "Apply a credit check to the customer, or skip it"),
    _p("import.run", LOCATION, "Data", "Import records into a location"),
    _p("export.run", LOCATION, "Data", "Export records of a location"),
    # company-wide
    _p("webhooks.manage", GLOBAL, "Administration", "Manage webhook endpoints and deliveries"),
    _p("integrations.manage", GLOBAL, "Administration", "Manage central-station integrations and unmatched signals"),
    _p("users.manage", GLOBAL, "Administration", "Create, edit and deactivate users"),
    _p("roles.manage", GLOBAL, "Administration", "Define roles and grant them to users"),
    _p("locations.manage", GLOBAL, "Administration", "Create and edit office locations"),
    _p("api_keys.manage", GLOBAL, "Administration", "Create and revoke API keys"),
    _p("audit.view", GLOBAL, "Administration", "Read the audit log"),
    _p("catalogs.manage", GLOBAL, "Administration", "Manage catalogs: tags, custom fields, system kinds"),
    _p("ops.manage", GLOBAL, "Administration", "Inspect and redeliver cross-service events"),
)

BY_NAME: dict[str, Permission] = {p.name: p for p in CATALOG}
LOCATION_PERMISSIONS = frozenset(p.name for p in CATALOG if p.scope == LOCATION)
GLOBAL_PERMISSIONS = frozenset(p.name for p in CATALOG if p.scope == GLOBAL)
ALL_PERMISSIONS = LOCATION_PERMISSIONS | GLOBAL_PERMISSIONS
AUTHENTICATED = "authenticated"  # documents an operation any signed-in caller may use

assert len(BY_NAME) == len(CATALOG), "duplicate permission names"


def scope_of(permission: str) -> str:
    try:
        return BY_NAME[permission].scope
    except KeyError:
        raise KeyError(f"{permission!r} is not in the permission catalog") from None
