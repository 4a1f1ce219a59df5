"""The customer record over HTTP: fields and their rules, ETags, events, errors, idempotency."""

import re
from datetime import date

from helpers import create, customer, lead, outbox_events
from sqlalchemy import select

from vigil_customer.models import Customer
from vigil_shared.messaging.contracts import parse_event
from vigil_shared.testing import identity_with


def test_create_read_update_delete_cycle(api, session):
    created = api.post("/api/v1/customers", json=customer(email="Alice@Example.com", first_name="Alice"))
    assert created.status_code == 201, created.json
    body = created.json
    assert body["email"] == "Alice@Example.com" and body["active"] is True and body["kind"] == "customer"
    assert isinstance(body["id"], int) and body["location_id"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["created_at"]), body["created_at"]
    assert created.headers["Location"].endswith(f"/api/v1/customers/{body['id']}")
    etag = created.headers["ETag"]

    read = api.get(f"/api/v1/customers/{body['id']}")
    assert read.status_code == 200 and read.headers["ETag"] == etag

    patched = api.patch(
        f"/api/v1/customers/{body['id']}", json={"work_phone": "801-555-9999"}, headers={"If-Match": etag}
    )
    assert patched.status_code == 200 and patched.json["work_phone"] == "801-555-9999"
    assert patched.headers["ETag"] != etag

    assert api.delete(f"/api/v1/customers/{body['id']}").status_code == 204
    assert api.get(f"/api/v1/customers/{body['id']}").status_code == 404

    types = [e.type for e in outbox_events(session)]
    assert types == ["customer.created", "customer.updated", "customer.deleted"]
    created_event, updated_event, deleted_event = outbox_events(session)
    assert created_event.data == {
        "customer_id": body["id"],
        "location_id": 1,
        "kind": "customer",
        "precheck": False,
        "parent_id": None,
        "monitoring_company_id": None,  # no Monitored By
        "restricted": {},
    }
    assert updated_event.data == {
        "customer_id": body["id"],
        "changed": ["work_phone"],
        "location_id": 1,
        "parent_id": None,
        "archived": False,
        "restricted": {},  # work_phone is on the contact section, seen with customers.view
        "monitoring_company_id": None,  # stated only when Monitored By changed
    }
    assert deleted_event.data == {"customer_id": body["id"]}


def test_an_update_names_the_changed_fields_a_section_permission_guards(api, session):
    record = create(api, customer())
    changed = api.patch(
        f"/api/v1/customers/{record['id']}", json={"city": "Kanata", "sold_by": "Sam", "installed": True}
    )
    assert changed.status_code == 200, changed.json
    [updated] = [e for e in outbox_events(session) if e.type == "customer.updated"]
    assert sorted(updated.data["changed"]) == ["city", "installed", "sold_by"]
    assert updated.data["restricted"] == {
        "installed": "customers.installation_info.view",
        "sold_by": "customers.sale_info.view",
    }


def test_an_events_parent_id_is_restricted_as_the_parent_field_is(api, session):
    """``parent_id`` (the sale-information field ``parent_customer_id``) is in every created and updated
    event: the change feed and webhooks gave it to readers who may not view that section."""
    parent = create(api, customer(last_name="Parent"))
    sub = create(api, customer(last_name="Sub", parent_customer_id=parent["id"]))
    assert api.patch(f"/api/v1/customers/{sub['id']}", json={"city": "Kanata"}).status_code == 200
    events = [e for e in outbox_events(session) if e.data["customer_id"] == sub["id"]]
    assert [e.type for e in events] == ["customer.created", "customer.updated"]
    for event in events:
        assert event.data["parent_id"] == parent["id"]
        assert event.data["restricted"]["parent_id"] == "customers.sale_info.view"
    [parents] = [e for e in outbox_events(session) if e.data["customer_id"] == parent["id"]]
    assert "parent_id" not in parents.data["restricted"]  # no parent: nothing to restrict


def test_events_follow_their_contracts(api, session):
    create(api)
    for row in outbox_events(session):
        event = parse_event(
            {
                "id": row.event_id,
                "type": row.type,
                "version": row.version,
                "occurred_at": row.occurred_at.isoformat(),
                "data": row.data,
                "source": "customer",
            }
        )
        assert event.data["customer_id"] > 0


def test_required_fields_per_kind(api):
    missing = api.post("/api/v1/customers", json={"first_name": "A"})
    assert missing.status_code == 422 and set(missing.json["errors"]) == {
        "location_id",
        "last_name",
        "city",
        "state",
        "primary_phone",
        "account_type",
    }
    missing = api.post("/api/v1/customers", json={"location_id": 1, "first_name": "A"})
    assert set(missing.json["errors"]) == {"last_name", "city", "state", "primary_phone", "account_type"}
    missing = api.post("/api/v1/customers", json={"kind": "lead", "location_id": 1, "first_name": "A"})
    assert set(missing.json["errors"]) == {"last_name", "city", "state", "primary_phone", "lead_status"}
    assert api.post("/api/v1/customers", json=lead()).status_code == 201


def test_required_fields_cannot_be_cleared(api):
    record = create(api)
    cleared = api.patch(f"/api/v1/customers/{record['id']}", json={"city": None, "account_type": None})
    assert cleared.status_code == 422 and set(cleared.json["errors"]) == {"city", "account_type"}


def test_zip_is_checked_against_the_states_country(api):
    def zip_error(state, code):
        response = api.post("/api/v1/customers?allow_duplicates=true", json=customer(state=state, zip=code))
        return None if response.status_code == 201 else response.json["errors"]["zip"][0]

    assert zip_error("UT", "84601") is None
    assert zip_error("UT", "84601-1234") is None
    assert zip_error("UT", "22") is not None
    assert zip_error("UT", "K1A 0B1") is not None
    assert zip_error("ON", "k1a0b1") is None
    assert zip_error("ON", "84601") is not None
    assert zip_error("ON", "D1A 0B1") is not None  # D is never used in Canadian codes
    stored = create(api, customer(state="on", zip="k1a0b1", primary_phone="613-555-0101"))
    assert stored["zip"] == "K1A 0B1" and stored["state"] == "ON"


def test_zip_rules_without_a_state():
    import pytest

    from vigil_customer.validation import normalize_zip

    assert normalize_zip("84601", None) == "84601"
    assert normalize_zip("K1A0B1", None) == "K1A 0B1"
    for bad in ("22", "84601-1234", "ABCDE"):
        with pytest.raises(ValueError):
            normalize_zip(bad, None)


def test_a_new_state_must_agree_with_the_stored_zip(api):
    record = create(api, customer(zip="84601"))
    moved = api.patch(f"/api/v1/customers/{record['id']}", json={"state": "ON"})
    assert moved.status_code == 422 and "zip" in moved.json["errors"]
    both = api.patch(f"/api/v1/customers/{record['id']}", json={"state": "ON", "zip": "K1A 0B1"})
    assert both.status_code == 200 and both.json["zip"] == "K1A 0B1"


def test_unknown_state_is_refused(api):
    response = api.post("/api/v1/customers", json=customer(state="ZZ"))
    assert response.status_code == 422 and "state" in response.json["errors"]


def test_phones_are_stored_normalised_and_shown_as_entered(api, session):
    record = create(api, customer(primary_phone="(801) 555-0123", cell_phone="+1 613 555 0199 ext. 4", state="UT"))
    assert record["primary_phone"] == "(801) 555-0123" and record["cell_phone"] == "+1 613 555 0199 ext. 4"
    stored = session.get(Customer, record["id"])
    assert stored.primary_phone_e164 == "+18015550123" and stored.cell_phone_e164 == "+16135550199"
    bad = api.post("/api/v1/customers", json=customer(primary_phone="555-1234", work_phone="12"))
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"primary_phone", "work_phone"}


def test_email_is_valid_and_unique_case_insensitively(api):
    create(api, customer(email="alice@example.com"))
    again = api.post("/api/v1/customers?allow_duplicates=true", json=customer(email="ALICE@example.COM"))
    assert again.status_code == 409 and again.headers["Content-Type"] == "application/problem+json"
    assert again.json["errors"] == {"email": ["Already in use."]}
    assert api.post("/api/v1/customers", json=customer(email="not-an-email")).status_code == 422


def test_patch_to_an_email_in_use_is_refused_and_changes_nothing(api):
    create(api, customer(email="alice@example.com"))
    bob = create(api, customer(first_name="Bob", email="bob@example.com"))
    refused = api.patch(f"/api/v1/customers/{bob['id']}", json={"email": "Alice@example.com", "spouse": "Eve"})
    assert refused.status_code == 409
    assert api.get(f"/api/v1/customers/{bob['id']}").json["spouse"] is None


def test_credit_score_has_a_letter_grade(api):
    grades = {}
    for score in (820, 700, 699, 650, 610, 560, 549):
        grades[score] = create(api, customer(credit_score=score))["credit_grade"]
    assert grades == {820: "A", 700: "A", 699: "B", 650: "B", 610: "C", 560: "D", 549: "F"}
    assert api.post("/api/v1/customers", json=customer(credit_score=900)).status_code == 422


def test_contract_term_shows_months_remaining(api):
    today = date.today()
    start = date(today.year - 1, today.month, 1)
    record = create(api, customer(contract_term_months=36, sale_date=start.isoformat()))
    assert record["contract_months_remaining"] == 24
    expired = create(api, customer(contract_term_months=12, sale_date="2001-01-01"))
    assert expired["contract_months_remaining"] == 0


def test_cancellation_needs_date_and_reason(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}"
    incomplete = api.patch(url, json={"canceled": True})
    assert incomplete.status_code == 422 and set(incomplete.json["errors"]) == {"cancel_date", "cancel_reason"}
    dangling = api.patch(url, json={"cancel_reason": "moved"})
    assert dangling.status_code == 422 and "cancel_reason" in dangling.json["errors"]
    canceled = api.patch(url, json={"canceled": True, "cancel_date": "2026-11-01", "cancel_reason": "Moved away"})
    assert canceled.status_code == 200 and canceled.json["cancel_reason"] == "Moved away"
    restored = api.patch(url, json={"canceled": False})
    assert restored.json["cancel_date"] is None and restored.json["cancel_reason"] is None


def test_every_section_of_the_record_round_trips(api):
    monitored_by = api.post("/api/v1/monitoring-companies", json={"name": "Brinks Home"}).json["id"]
    body = customer(
        birthdate="1980-02-03",
        language="en-us",
        address_line1="1 Main St",
        address_line2="Apt 2",
        zip="84601",
        county="Utah",
        cross_street="Center St",
        work_phone="801-555-7000",
        cell_phone="801-555-7001",
        other_phone="801-555-7002",
        email="full@example.com",
        best_time_to_contact="evenings",
        ssn="123456789",
        spouse="Sam",
        credit_score=710,
        credit_tracking_number="CT-1",
        account_class="gold",
        business_name="Reyes Bakery",
        business_contact="Dana",
        dba_name="The Bakery",
        source="web",
        source_campaign="spring",
        company="Reyes Holdings",
        description="VIP",
        notes="prefers calls",
        sale_date="2026-01-15",
        sold_by="rep1",
        trainee_trainer="t1",
        lead_rep="lr",
        call_center_rep="ccr",
        adt_number="A1",
        adt_serial_man="S1",
        account_number="AC-1",
        mmr=3999,
        mmr_a_la_carte=True,
        currency="cad",
        monitoring_plan="basic",
        discount_affiliate="AARP",
        discount_affiliate_member_number="M1",
        monitoring_company_id=monitored_by,
        interactive_services_provider="alarm.com",
        adt_system_type="std",
        contract_term_months=60,
        activation_fee=9900,
        warranty_term_months=24,
        dealer_number="D1",
        collections_date="2026-12-01",
        install_date="2026-02-01",
        install_tech="tech1",
        confirmation_number="CN-1",
        receiver_number="RN-1",
        abort_code="4321",
        installed=True,
        two_way_voice=True,
        cellular_backup=True,
        guard_response=True,
        maintenance=True,
        invoicing=True,
        aarp=True,
        tellular=True,
        pulse=True,
        installation_appointment_id=7,
    )
    record = create(api, body)
    for name, value in body.items():
        expected = {"language": "en-US", "ssn": "123-45-6789", "currency": "CAD"}.get(name, value)
        assert record[name] == expected, name


def test_leads_have_no_sale_or_installation_fields(api):
    response = api.post("/api/v1/customers", json=lead(sale_date="2026-01-01", abort_code="1"))
    assert response.status_code == 422
    assert response.json["errors"] == {
        "sale_date": ["Only customers have this field."],
        "abort_code": ["Only customers have this field."],
    }
    record = create(api, lead(callback_at="2026-12-01T15:00:00Z", lead_comments="call back", source="flyer"))
    assert record["callback_at"] == "2026-12-01T15:00:00Z" and record["source"] == "flyer"
    assert "sale_date" not in record and "abort_code" not in record
    customer_only = api.post("/api/v1/customers", json=customer(lead_status="hot"))
    assert customer_only.json["errors"] == {"lead_status": ["Only leads have this field."]}


def test_stale_if_match_is_refused_with_412_and_changes_nothing(api):
    created = api.post("/api/v1/customers", json=customer())
    cid, etag = created.json["id"], created.headers["ETag"]
    assert (
        api.patch(f"/api/v1/customers/{cid}", json={"first_name": "Alicia"}, headers={"If-Match": etag}).status_code
        == 200
    )
    stale = api.patch(f"/api/v1/customers/{cid}", json={"first_name": "Ally"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert api.delete(f"/api/v1/customers/{cid}", headers={"If-Match": etag}).status_code == 412
    assert api.get(f"/api/v1/customers/{cid}").json["first_name"] == "Alicia"


def test_validation_errors_name_the_field(api):
    response = api.post(
        "/api/v1/customers", json={"first_name": "", "last_name": 12, "email": "nope", "extra": 1, "location_id": "x"}
    )
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert set(response.json["errors"]) == {
        "first_name",
        "last_name",
        "email",
        "extra",
        "location_id",
        "city",
        "state",
        "primary_phone",
        "account_type",
    }
    assert response.json["type"] == "urn:vigil:problem:validation"


def test_a_create_hears_of_every_problem_at_once(api):
    """Regression: a bad ZIP hid the missing names; schema errors hid the seed rules' errors."""
    body = {
        "location_id": 1,
        "city": "Provo",
        "state": "UT",
        "zip": "22",
        "primary_phone": "12",
        "account_type": "residential",
        "ssn": "000-12-3456",
    }
    response = api.post("/api/v1/customers", json=body)
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"first_name", "last_name", "zip", "primary_phone", "ssn"}
    schema_and_rules = api.post("/api/v1/customers", json=body | {"email": "nope", "language": "1"})
    assert set(schema_and_rules.json["errors"]) == {
        "first_name",
        "last_name",
        "zip",
        "primary_phone",
        "ssn",
        "email",
        "language",
    }
    lead = api.post(
        "/api/v1/leads", json={"location_id": 1, "first_name": "L", "zip": "K1A", "state": "ON", "email": "nope"}
    )
    assert set(lead.json["errors"]) == {"last_name", "city", "primary_phone", "lead_status", "zip", "email"}
    patch = api.patch(f"/api/v1/customers/{create(api)['id']}", json={"zip": "22", "city": None, "language": "1"})
    assert patch.status_code == 422 and set(patch.json["errors"]) == {"zip", "city", "language"}
    with_rights = api.post("/api/v1/customers", json=body | {"canceled": True, "first_name": "A", "last_name": "B"})
    assert set(with_rights.json["errors"]) == {"zip", "primary_phone", "ssn", "cancel_date", "cancel_reason"}


def test_a_us_zip_plus_4_without_its_dash_is_normalised(api):
    from vigil_customer.validation import normalize_zip

    assert normalize_zip("846011234", "UT") == "84601-1234" and normalize_zip("84601 1234", "UT") == "84601-1234"
    assert normalize_zip("84601", "UT") == "84601"
    stored = create(api, customer(zip="846011234"))
    assert stored["zip"] == "84601-1234"
    for bad in ("8460112345", "84601-123", "8460-11234"):
        assert api.post("/api/v1/customers?allow_duplicates=true", json=customer(zip=bad)).status_code == 422, bad


def test_read_only_fields_are_named_and_nothing_changes(api):
    record = create(api)
    for field, value in (
        ("id", 99),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("kind", "lead"),
        ("credit_grade", "A"),
        ("version", 9),
        ("call_center_rep", "x"),
    ):
        response = api.patch(f"/api/v1/customers/{record['id']}", json={field: value, "spouse": "Sam"})
        assert response.status_code == 422, field
        assert field in response.json["errors"], response.json
    after = api.get(f"/api/v1/customers/{record['id']}").json
    assert after["spouse"] is None and after["updated_at"] == record["updated_at"]


def test_malformed_json_wrong_media_type_and_oversized_bodies(api, app):
    bad_json = api.post("/api/v1/customers", data="{not json", content_type="application/json")
    assert bad_json.status_code == 400 and bad_json.headers["Content-Type"] == "application/problem+json"
    wrong_type = api.post("/api/v1/customers", data="first_name=a", content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415
    huge = api.post("/api/v1/customers", json={"first_name": "a" * (app.config["MAX_CONTENT_LENGTH"] + 10)})
    assert huge.status_code == 413 and huge.json["status"] == 413
    assert api.post("/api/v1/customers", json=[1, 2]).status_code == 422


def test_requests_without_a_gateway_identity_are_refused(api):
    anonymous = api.as_(None)
    response = anonymous.get("/api/v1/customers")
    assert response.status_code == 401 and response.headers["Content-Type"] == "application/problem+json"
    forged = anonymous.get("/api/v1/customers", headers={"X-Vigil-Identity": "eyJhbGciOiJub25lIn0.e30."})
    assert forged.status_code == 401
    assert anonymous.get("/healthz").status_code == 200


def test_request_id_is_echoed_or_generated(api):
    assert api.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    assert len(api.get("/healthz").headers["X-Request-ID"]) == 32


def test_web_readyz_checks_the_database_and_workers_the_broker_too(api, runtime):
    response = api.get("/readyz")
    assert response.status_code == 200 and response.json["checks"] == {"database": {"status": "ok"}}
    assert set(runtime.ready_checks()) == {"database", "broker"}  # the worker's and the relay's /readyz


def test_customer_rows_are_real(session, api):
    create(api, customer(email="Alice@Example.com"))
    stored = session.scalars(select(Customer)).one()
    assert stored.email_key == "alice@example.com" and stored.version == 1


def test_operators_can_list_and_redeliver_outbox_events(api, session):
    from vigil_customer.models import messaging

    created = api.post("/api/v1/customers", json=customer())
    listed = api.get("/api/v1/ops/customer/outbox?type=customer.created")
    assert listed.status_code == 200 and listed.json["total"] == 1
    event = listed.json["items"][0]
    assert event["published_at"] is None and event["request_id"] == created.headers["X-Request-ID"]
    # an operator runs the pipeline; the event's business data (names, scores, amounts of every office) is
    # not theirs to read: never shown here, whatever else the caller holds
    assert "data" not in event and "Dana" not in listed.text
    session.execute(messaging.OutboxEvent.__table__.update().values(published_at=messaging.OutboxEvent.occurred_at))
    session.commit()
    redelivered = api.post(f"/api/v1/ops/customer/outbox/{event['event_id']}/redeliver")
    assert redelivered.status_code == 202 and redelivered.json["published_at"] is None
    assert "data" not in redelivered.json and "Dana" not in redelivered.text
    clerk = api.as_(identity_with("customers.view", username="clerk"))
    assert clerk.get("/api/v1/ops/customer/outbox").status_code == 403


def test_idempotency_key_executes_a_post_once(api, session):
    headers = {"Idempotency-Key": "create-alice-1"}
    body = customer(email="alice@example.com")
    first = api.post("/api/v1/customers", json=body, headers=headers)
    again = api.post("/api/v1/customers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(outbox_events(session, "customer.created")) == 1
    different = api.post("/api/v1/customers", json=body | {"first_name": "Other"}, headers=headers)
    assert different.status_code == 422 and "Idempotency-Key" in different.json["errors"]


def test_a_failed_post_releases_its_idempotency_key(api):
    headers = {"Idempotency-Key": "retry-me"}
    assert api.post("/api/v1/customers", json={"first_name": "A"}, headers=headers).status_code == 422
    assert api.post("/api/v1/customers", json={"first_name": "A"}, headers=headers).status_code == 422
    corrected = api.post("/api/v1/customers", json=customer(), headers=headers)
    assert corrected.status_code == 201, "the failed attempts released the key, so the corrected retry runs"


def test_every_operation_documents_its_permission(app):
    spec = app.extensions["vigil_api"].spec.to_dict()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in ("get", "post", "patch", "put", "delete"):
                assert "x-vigil-permission" in operation, f"{method.upper()} {path}"
                if method == "post" and not path.startswith("/api/v1/ops"):
                    names = [p["name"] for p in operation.get("parameters", [])]
                    assert "Idempotency-Key" in names, f"POST {path} takes no Idempotency-Key"


def test_every_parameter_an_operation_reads_is_documented(app):
    """Regression: ``?allow_duplicates`` was read but not in the OpenAPI (the Idempotency-Key doc replaced
    the query arguments), and no write documented the ``If-Match`` it honours. Each view's source is
    read: what it reads (``check_if_match``, ``request.args``/``headers``, keyword arguments) must be
    listed among the operation's parameters."""
    import inspect
    import re as regex

    spec = app.extensions["vigil_api"].spec.to_dict()
    checked = 0
    for rule in app.url_map.iter_rules():
        view_class = getattr(app.view_functions[rule.endpoint], "view_class", None)
        if (
            view_class is None
            or not rule.rule.startswith("/api/v1/")
            or "/ops/" in rule.rule
            or "/internal/" in rule.rule
        ):
            continue
        path = regex.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            function = getattr(view_class, method.lower())
            source = inspect.getsource(inspect.unwrap(function))
            documented = {p["name"] for p in spec["paths"][path][method.lower()].get("parameters", [])}
            documented |= {p["name"] for p in spec["paths"][path].get("parameters", [])}
            assert "request.headers" not in source and "request.args" not in source, f"{method} {path}"
            wanted = set(inspect.signature(inspect.unwrap(function)).parameters) - {
                "self",
                "data",
                "changes",
                "overrides",
                "args",
                "upload",
                "form",
            }
            if "check_if_match(" in source:
                wanted.add("If-Match")
            if method == "POST" and "Idempotency-Key" not in wanted:
                wanted.add("Idempotency-Key")
            if "page" in wanted:
                wanted |= {"per_page"}
            missing = {name.replace("**", "") for name in wanted} - documented - {"filters"}
            assert not missing, f"{method} {path} reads {missing} without documenting them"
            checked += 1
    assert checked > 30
    post = spec["paths"]["/api/v1/customers"]["post"]
    assert {"allow_duplicates", "Idempotency-Key"} <= {p["name"] for p in post["parameters"]}
    assert {p["in"] for p in post["parameters"] if p["name"] == "allow_duplicates"} == {"query"}
