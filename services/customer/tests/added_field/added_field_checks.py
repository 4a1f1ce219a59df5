"""Run by ``test_field_registry.py`` in a pytest process where ``added_field_plugin`` registered two new
fields: ``gate_instructions`` (optional text, installation card) and ``gate_code`` (confidential).
Their columns are added to the migrated test database here, as their migration would."""

import pytest
from helpers import create, customer
from sqlalchemy import text
from sqlalchemy.schema import CreateColumn

from vigil_customer.models import Customer
from vigil_shared.testing import identity_with

INSTALL_EDIT = (
    "customers.view",
    "customers.modify",
    "customers.installation_info.view",
    "customers.installation_info.modify",
)


@pytest.fixture(scope="session", autouse=True)
def added_columns(app):
    engine = app.extensions["vigil_runtime"].db.engine
    with engine.begin() as conn:
        for name in ("gate_instructions", "gate_code_enc"):
            column = CreateColumn(Customer.__table__.c[name]).compile(dialect=engine.dialect)
            conn.execute(text(f"ALTER TABLE customers ADD COLUMN {column}"))


def as_(api, *permissions):
    return api.as_(identity_with(*permissions, locations=(1,), username="clerk"))


def test_the_schemas_and_the_openapi_document_carry_the_new_fields(api):
    schemas = api.get("/openapi.json").json["components"]["schemas"]
    for name in ("CustomerCreate", "CustomerPatch", "Duplicate"):
        properties = schemas[name]["properties"]  # shaped as the fields declared alike
        assert properties["gate_instructions"] == {
            **properties["address_line1"],
            "description": "How to get through the gate",
        }
        assert properties["gate_code"] == {**properties["abort_code"], "maxLength": 20}
    assert schemas["Customer"]["properties"]["gate_instructions"] == schemas["Customer"]["properties"]["install_tech"]
    assert "gate_instructions" not in schemas["CustomerListItem"]["properties"]

    too_long = api.post("/api/v1/customers?allow_duplicates=true", json=customer(gate_instructions="x" * 201))
    assert too_long.status_code == 422 and "gate_instructions" in too_long.json["errors"]


def test_the_new_fields_are_stored_shown_and_masked_by_their_section(api):
    record = create(api, customer(gate_instructions="  Buzz 12, then left  ", gate_code="1234"))
    assert record["gate_instructions"] == "Buzz 12, then left" and record["gate_code"] == "1234"

    installer = as_(api, *INSTALL_EDIT)
    seen = installer.get(f"/api/v1/customers/{record['id']}").json
    assert seen["gate_instructions"] == "Buzz 12, then left" and seen["gate_code"] == "***"

    reader = as_(api, "customers.view")
    hidden = reader.get(f"/api/v1/customers/{record['id']}").json
    assert "gate_instructions" not in hidden and "gate_code" not in hidden


def test_writing_the_new_fields_needs_their_section_permissions(api):
    record = create(api)
    contact_editor = as_(api, "customers.view", "customers.modify", "customers.contact_info.modify")
    refused = contact_editor.patch(f"/api/v1/customers/{record['id']}", json={"gate_instructions": "x"})
    assert refused.status_code == 403 and refused.json["permission"] == "customers.installation_info.modify"

    installer = as_(api, *INSTALL_EDIT)
    changed = installer.patch(f"/api/v1/customers/{record['id']}", json={"gate_instructions": "Side door"})
    assert changed.status_code == 200 and changed.json["gate_instructions"] == "Side door"
    # a first code may be entered; changing a saved one needs the confidential permission
    assert installer.patch(f"/api/v1/customers/{record['id']}", json={"gate_code": "1111"}).status_code == 200
    again = installer.patch(f"/api/v1/customers/{record['id']}", json={"gate_code": "2222"})
    assert again.status_code == 403 and again.json["permission"] == "confidential.installation_codes.modify"
    assert api.get(f"/api/v1/customers/{record['id']}").json["gate_code"] == "1111"


def test_history_follows_the_new_fields(api):
    record = create(api)
    api.patch(f"/api/v1/customers/{record['id']}", json={"gate_instructions": "Side door", "gate_code": "9876"})
    url = f"/api/v1/customers/{record['id']}/history?per_page=100"

    entries = {e["field"]: e for e in api.get(url).json["items"]}
    assert entries["gate_instructions"]["new_value"] == "Side door"
    assert entries["gate_code"]["new_value"] == "9876" and entries["gate_code"]["confidential"] is True

    installer = as_(api, "customers.view", "customers.installation_info.view", "history.view")
    masked = {e["field"]: e for e in installer.get(url).json["items"]}
    assert masked["gate_instructions"]["new_value"] == "Side door" and masked["gate_code"]["new_value"] == "***"

    reader = as_(api, "customers.view", "history.view")
    fields = {e["field"] for e in reader.get(url).json["items"]}
    assert "gate_instructions" not in fields and "gate_code" not in fields


def test_a_copy_takes_the_new_text_field_but_not_the_per_account_code(api):
    record = create(api, customer(gate_instructions="Side door", gate_code="1234"))
    copy = api.post(f"/api/v1/customers/{record['id']}/duplicate", json={}).json
    assert copy["gate_instructions"] == "Side door" and copy["gate_code"] is None
