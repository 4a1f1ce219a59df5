"""Fast paths pinned to the slower code they replace: same answers, same rows (issue 10's costs)."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from helpers import create, customer, lead, outbox_events
from sqlalchemy import delete, event, func, insert, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Engine

from vigil_customer import customers, duplicates, history, registry
from vigil_customer.api import customers as api_customers
from vigil_customer.contacts import on_site
from vigil_customer.models import Customer, CustomFieldDefinition, HistoryEntry, SearchTerm, messaging
from vigil_shared.identity import service_identity
from vigil_shared.messaging.contracts import CustomerCreated, contract_of
from vigil_shared.messaging.outbox import record_event
from vigil_shared.multi_insert import insert_each
from vigil_shared.testing import identity_with

ON_SITE_FIELDS = ("id", "name", "relation", "role", "phones", "email", "has_key", "call_priority", "is_primary")


def test_the_on_site_contacts_are_the_emergency_list_without_its_passcodes(api):
    record = create(api, customer(state="ON", primary_phone="613-555-0100"))
    url = f"/api/v1/customers/{record['id']}/contacts"
    api.post(
        url,
        json={
            "type": "emergency",
            "name": "ann",
            "relation": "neighbour",
            "has_key": True,
            "phones": [{"label": "cell", "number": "613-555-0111"}, {"label": "work", "number": "613-555-0112"}],
            "passcode": "blue",
        },
    )
    api.post(url, json={"type": "emergency", "name": "Bob", "relation": "son", "email": "bob@example.com"})
    api.post(url, json={"type": "emergency", "name": "Cid", "call_priority": 1, "passcode": "red"})
    api.post(url, json={"type": "other", "name": "Accountant", "role": "billing", "is_primary": True})
    gateway = api.as_(service_identity("gateway", {"contacts.view"}))
    listed = gateway.get(f"{url}?type=emergency&per_page=100").json["items"]
    fast = gateway.get(f"/api/v1/internal/customers/{record['id']}/emergency-contacts")
    assert fast.status_code == 200
    assert fast.json["items"] == [{k: c[k] for k in ON_SITE_FIELDS} for c in listed]
    assert [c["name"] for c in fast.json["items"]] == ["Cid", "ann", "Bob"]
    assert "blue" not in fast.get_data(as_text=True) and "red" not in fast.get_data(as_text=True)

    alone = create(api, customer(first_name="Zed", email="zed@example.com", primary_phone="613-555-0199"))
    empty = gateway.get(f"/api/v1/internal/customers/{alone['id']}/emergency-contacts")
    assert empty.status_code == 200 and empty.json["items"] == []


def test_the_on_site_contacts_answer_like_the_list_where_the_caller_may_not_look(api):
    record = create(api)
    api.post(f"/api/v1/customers/{record['id']}/contacts", json={"type": "emergency", "name": "Ann"})
    path = f"/api/v1/internal/customers/{record['id']}/emergency-contacts"
    elsewhere = api.as_(identity_with("contacts.view", "customers.view", locations=(2,)))
    assert elsewhere.get(path).status_code == 404  # a record out of scope answers like an unknown id
    assert elsewhere.get(f"/api/v1/customers/{record['id']}/contacts").status_code == 404
    gateway = api.as_(service_identity("gateway", {"contacts.view"}))
    assert gateway.get("/api/v1/internal/customers/999999/emergency-contacts").status_code == 404
    assert api.as_(service_identity("gateway", {"customers.view"})).get(path).status_code == 403


def test_on_site_reads_nothing_for_an_unknown_record(session):
    try:
        on_site(session, 424242)
    except Exception as problem:  # noqa: BLE001 - the service's 404 problem
        assert getattr(problem, "status", None) == 404
    else:
        raise AssertionError("an unknown record is a 404")


def _rows(session, customer_id):
    columns = [c for c in HistoryEntry.__table__.c if c.name not in ("id", "at")]
    return [tuple(row) for row in session.execute(select(*columns).where(HistoryEntry.customer_id == customer_id))]


def test_history_rows_written_together_are_the_rows_written_one_by_one(api, session, runtime):
    first, second = create(api), create(api, customer(first_name="Other", email="o@example.com"))
    actor = history.Actor(identity_with("customers.modify", locations=(1,)), "api")
    changes = [
        (None, None, "customer", None),
        ("first_name", None, "Dana", None),
        ("active", False, True, None),
        ("ssn", None, "123-45-6789", "ssn"),
        ("birthdate", "1980-01-02", None, "birthdate"),
    ]
    for customer_id in (first["id"], second["id"]):
        session.execute(HistoryEntry.__table__.delete().where(HistoryEntry.customer_id == customer_id))
    for field, old, new, confidential in changes:
        history.record(
            session, actor, first["id"], "create", field=field, old=old, new=new, confidential=confidential,
            cipher=runtime.cipher,
        )  # fmt: skip
    session.flush()
    history.record_many(session, actor, second["id"], "create", changes, runtime.cipher)
    one_by_one, together = _rows(session, first["id"]), _rows(session, second["id"])
    customer_id_at = [c.name for c in HistoryEntry.__table__.c if c.name not in ("id", "at")].index("customer_id")
    encrypted = {
        i
        for i, c in enumerate(c for c in HistoryEntry.__table__.c if c.name not in ("id", "at"))
        if c.name.endswith("_enc")
    }

    def comparable(row):  # tokens differ each time they are made: compare what they decrypt to
        return tuple(
            runtime.cipher.decrypt(v) if i in encrypted else v for i, v in enumerate(row) if i != customer_id_at
        )

    assert [comparable(r) for r in together] == [comparable(r) for r in one_by_one]
    assert len(together) == len(changes)


def test_the_fields_of_a_kind_are_worked_out_once_and_as_before():
    for kind in registry.KINDS:
        expected = tuple(
            f.name
            for section in registry.SECTION_ORDER[kind]
            for f in registry.FIELDS
            if f.belongs_to(kind) and f.section(kind) == section
        )
        assert registry.fields_of(kind) == expected
        assert registry.fields_of(kind) is registry.fields_of(kind)


def test_a_create_shows_its_custom_values_under_a_definition_made_in_the_same_session(api):
    made = api.post("/api/v1/custom-fields", json={"key": "gate", "label": "Gate", "type": "text"})
    assert made.status_code == 201, made.json
    record = create(api, customer(custom_fields={"gate": "north"}))
    assert record["custom_fields"] == {"gate": "north"}


def test_page_one_from_its_kept_statements_is_the_page_built_afresh(api):
    from vigil_customer import search

    for n in range(5):
        create(api, customer(first_name=f"P{n}", last_name=f"Zq{n}", email=f"p{n}@example.com"))
    for args in ("", "?sort=-name", "?sort=created&per_page=2", "?kind=customer&location_id=1", "?sort=-id"):
        search._FIRST_PAGES.clear()
        afresh = api.get(f"/api/v1/customers{args}")
        kept = api.get(f"/api/v1/customers{args}")  # the statements built by the first call
        assert afresh.status_code == kept.status_code == 200
        assert kept.json == afresh.json and kept.headers.get("Link") == afresh.headers.get("Link")
        assert afresh.json["items"], args


def _find_as_before(session, candidate, exclude_id=None):
    """The duplicate query as it was built on every create before its statements were kept."""
    conditions = []
    if candidate.phones:
        conditions += [column.in_(sorted(candidate.phones)) for column in duplicates.PHONE_COLUMNS]
    if candidate.email_key:
        conditions.append(Customer.email_key == candidate.email_key)
    if candidate.ssn_index:
        conditions.append(Customer.ssn_index == candidate.ssn_index)
    if candidate.name_address_key:
        conditions.append(Customer.name_address_key == candidate.name_address_key)
    if not conditions:
        return []
    statement = select(*duplicates._COMPARED).where(or_(*conditions)).order_by(Customer.id).limit(80)
    if exclude_id is not None:
        statement = statement.where(Customer.id != exclude_id)
    matches = []
    for row in session.execute(statement):
        reasons = []
        if candidate.phones & {p for p in (getattr(row, c.key) for c in duplicates.PHONE_COLUMNS) if p}:
            reasons.append("phone")
        for reason, key in (("email", "email_key"), ("ssn", "ssn_index"), ("name_address", "name_address_key")):
            if getattr(candidate, key) and getattr(row, key) == getattr(candidate, key):
                reasons.append(reason)
        if reasons:
            matches.append(
                duplicates.Match(
                    row.id, f"{row.first_name} {row.last_name}".strip(), row.kind, row.location_id, reasons
                )
            )
    matches.sort(key=lambda m: (-len(m.reasons), m.id))
    return matches[:20]


def test_the_duplicate_check_from_its_kept_statements_finds_what_the_query_built_afresh_finds(api, session):
    identifying = {"ssn": "123-45-6789", "address_line1": "1 Main St", "zip": "84601"}
    full = create(api, email="dana@example.com", work_phone="801-555-7000", cell_phone="801-555-7001", **identifying)
    create(api, customer(email="other@example.com", work_phone="801-555-7001"))
    create(api, customer(first_name="Dana", last_name="Reyes", address_line1="1 Main St", zip="84601"))
    create(api, customer(ssn="123-45-6789", first_name="Sam"))
    whole = duplicates.Candidate.of(session.get(Customer, full["id"]))
    assert whole.phones and whole.email_key and whole.ssn_index and whole.name_address_key
    candidates = [
        whole,
        replace(whole, phones=frozenset()),
        replace(whole, email_key=None, ssn_index=None),
        duplicates.Candidate(phones=whole.phones),
        duplicates.Candidate(email_key=whole.email_key),
        duplicates.Candidate(ssn_index=whole.ssn_index),
        duplicates.Candidate(name_address_key=whole.name_address_key),
        duplicates.Candidate(phones=frozenset({"+18015550000"})),
        duplicates.Candidate(),
    ]
    for candidate in candidates:
        for exclude_id in (None, full["id"]):
            found = duplicates.find(session, candidate, exclude_id=exclude_id)
            assert found == _find_as_before(session, candidate, exclude_id), (candidate, exclude_id)
    assert len(duplicates.find(session, whole)) == 4


def test_a_created_records_event_row_is_the_row_outbox_add_writes(api, session):
    everything = {"ssn": "123-45-6789", "business_name": "Reyes Alarms", "address_line1": "2 Main St", "zip": "84601"}
    full = create(api, email="full@example.com", account_type="commercial", **everything)
    minimal = create(api, lead())
    rows = {row.data["customer_id"]: row for row in outbox_events(session, "customer.created")}
    for record in (full, minimal):
        row = rows[record["id"]]
        payload = contract_of(CustomerCreated).read(row.data)  # valid against its contract
        assert payload.customer_id == record["id"] and payload.location_id == record["location_id"]
        event = record_event(session, messaging, payload, source="customer", request_id=row.request_id)
        session.flush()
        added = session.scalars(select(messaging.OutboxEvent).where(messaging.OutboxEvent.event_id == event.id)).one()
        assert (row.type, row.version, row.data, row.request_id, row.published_at) == (
            added.type, added.version, added.data, added.request_id, added.published_at,
        )  # fmt: skip
    assert rows[minimal["id"]].data["kind"] == "lead"


def _written(session, cipher, customer_id):
    """Every row a create wrote for ``customer_id`` (record, history, search terms, event), without
    what differs between two creates of one body: ids, times and the tokens of encrypted values
    (compared by what they decrypt to)."""

    def plain(row, skipped):
        return {
            k: (cipher.decrypt(v) if k.endswith("_enc") else v)
            for k, v in row._mapping.items()
            if k not in skipped and not k.endswith("_at")
        }

    record = session.execute(select(Customer.__table__).where(Customer.id == customer_id)).one()
    rows = session.execute(
        select(HistoryEntry.__table__).where(HistoryEntry.customer_id == customer_id).order_by(HistoryEntry.id)
    )
    terms = session.execute(
        select(SearchTerm.__table__).where(SearchTerm.customer_id == customer_id).order_by(SearchTerm.id)
    )
    event = [e for e in outbox_events(session, "customer.created") if e.data["customer_id"] == customer_id]
    return {
        "record": plain(record, {"id"}),
        "history": [plain(r, {"id", "at", "customer_id"}) for r in rows],
        "terms": [
            plain(t, {"id", "customer_id"}) | ({"term": "#id", "head": "#"} if t.term == f"#{customer_id}" else {})
            for t in terms
        ],
        "event": [
            (e.type, e.version, {**e.data, "customer_id": None}, bool(e.request_id), e.published_at) for e in event
        ],
    }


def _create_old_and_new(api, session, runtime, monkeypatch, body, old_paths, path="/api/v1/customers"):
    """``body`` posted to ``path`` (a create, or a copy) with the code before the fast paths
    (``old_paths`` patched in), its rows read and the record deleted, then posted again with the
    code as it is: both sets of rows."""
    written = []
    for patches in (old_paths, {}):
        with monkeypatch.context() as patched:
            for (module, name), replacement in patches.items():
                patched.setattr(module, name, replacement)
            response = api.post(f"{path}?allow_duplicates=true", json=dict(body))
            assert response.status_code == 201, response.json
            record = response.json
        session.rollback()
        written.append(_written(session, runtime.cipher, record["id"]))
        session.execute(delete(Customer.__table__).where(Customer.id == record["id"]))
        session.commit()
    return written


def _orm_insert(session, record, *, definitions=False, duplicates_of=None, taken=None):
    """How a new record was written before ``customers._insert``: the ORM's flush (the custom field
    definitions a create assumed are then read by ``custom_fields.confirm``; these bodies match no record)."""
    session.add(record)
    customers._flush(session)
    return None, False


EVERYTHING = {
    "ssn": "123-45-6789",
    "birthdate": "1980-02-03",
    "email": "Dana.Full@Example.com",
    "work_phone": "801-555-7000",
    "cell_phone": "(801) 555-7001",
    "address_line1": "2 Main St.",
    "zip": "84601",
    "business_name": "Reyes Alarm Systems",
    "account_type": "commercial",
    "active": False,
    "mmr": 4599,
    "abort_code": "7391",
    "sale_date": "2026-11-02",
    "contract_term_months": 36,
}


def test_a_created_records_rows_are_the_rows_the_orm_path_wrote(api, session, runtime, monkeypatch):
    made = api.post("/api/v1/custom-fields", json={"key": "gate", "label": "Gate", "type": "text"})
    assert made.status_code == 201, made.json
    # before: the ORM's flush of the record, then one executemany per table for the rest
    old_paths = {(customers, "_insert"): _orm_insert, (customers, "insert_together"): insert_each}
    for body in (customer(**EVERYTHING, custom_fields={"gate": "north"}), customer(), lead(email="l@example.com")):
        before, after = _create_old_and_new(api, session, runtime, monkeypatch, body, old_paths)
        assert after == before
        assert len(after["history"]) > 5 and after["terms"] and len(after["event"]) == 1
    source = create(api, customer(**EVERYTHING))  # a copy: its rows, and the source's "copied to" entry
    copies = _create_old_and_new(
        api,
        session,
        runtime,
        monkeypatch,
        {"first_name": "Copy"},
        old_paths,
        f"/api/v1/customers/{source['id']}/duplicate",
    )
    assert copies[1] == copies[0] and copies[1]["history"][0]["new_value"] == f"copy of #{source['id']}"
    noted = session.scalars(
        select(HistoryEntry.new_value).where(
            HistoryEntry.customer_id == source["id"], HistoryEntry.action == "duplicate"
        )
    ).all()
    assert len(noted) == 2 and all(n.startswith("copied to #") for n in noted)
    stored = session.execute(select(Customer.ssn_enc, Customer.abort_code_enc)).all()
    assert stored == [] or all("6789" not in str(row) and "7391" not in str(row) for row in stored)


def test_a_record_written_by_core_is_loaded_as_the_orm_leaves_it(api, session, runtime):
    """``customers._insert`` leaves the object persistent and loaded: reading it sends no SQL and
    nothing is left to flush."""
    from sqlalchemy import event

    from vigil_customer.customers import STARTING_VALUES

    unset = ("currency", "pulse")  # left to their defaults, as an ORM INSERT fills them in
    record = Customer(kind="customer", created_by="t", **{k: v for k, v in STARTING_VALUES.items() if k not in unset})
    record.location_id, record.first_name, record.last_name = 1, "Ann", "Lee"
    record.created_at = record.updated_at = record.last_activity_at = datetime.now(UTC)
    customers._insert(session, record)
    statements = []

    def sent(conn, cursor, statement, *args):
        statements.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", sent)
    try:
        assert session.get(Customer, record.id) is record
        shown = {c.key: getattr(record, c.key) for c in Customer.__table__.c}
        assert not session.dirty and not session.new and record.version == 1
    finally:
        event.remove(engine, "before_cursor_execute", sent)
    assert statements == []
    assert (shown["currency"], shown["pulse"], shown["custom_fields"], shown["sort_name"]) == ("USD", False, {}, "")
    assert shown["active"] is True and shown["created_by"] == "t" and shown["address_line1"] is None
    stored = session.execute(select(Customer.__table__).where(Customer.id == record.id)).one()._mapping
    assert dict(stored) == shown


def test_a_phone_number_parsed_again_is_read_as_the_first_time():
    from vigil_customer import validation

    parse = validation.parse_phone.__wrapped__  # the parse itself, as it ran every time before
    for number, state in (("(801) 555-0142", "UT"), ("613 555 0100", "ON"), ("+44 20 7946 0958", None)):
        first, again = validation.parse_phone(number, state), validation.parse_phone(number, state)
        assert first == again == parse(number, state)
    hits = validation.parse_phone.cache_info().hits
    validation.parse_phone("(801) 555-0142", "UT")
    assert validation.parse_phone.cache_info().hits == hits + 1
    for _ in range(2):  # a refusal is not kept: refused each time
        with pytest.raises(ValueError):
            validation.parse_phone("555-01", "UT")


def _define_elsewhere(session, **values):
    """A definition written by another process: this one's catalog writes never heard of it."""
    session.execute(insert(CustomFieldDefinition.__table__).values(version=1, label=values["key"], **values))
    session.commit()


def _change_elsewhere(session, key, **values):
    table = CustomFieldDefinition.__table__
    session.execute(sql_update(table).where(table.c.key == key).values(**values))
    session.commit()


def test_a_create_follows_definitions_changed_by_another_process(api, session):
    """A create uses the definitions its process read last, unread; the ``INSERT`` returns the current
    ones, and a refusal reads them: what another process changed meanwhile still decides."""
    _define_elsewhere(session, key="gate_code", type="text", options=[], required=False, applies_to="both")
    create(api, customer(custom_fields={"gate_code": "1"}))  # this process now knows gate_code only

    _define_elsewhere(session, key="panel", type="select", options=["DSC"], required=False, applies_to="both")
    added = create(api, customer(first_name="Added", custom_fields={"panel": "DSC"}))  # refused by the old ones
    assert added["custom_fields"] == {"panel": "DSC"}

    _change_elsewhere(session, "gate_code", required=True)  # the INSERT finds it required
    before = session.scalar(select(func.count()).select_from(Customer))
    missing = api.post("/api/v1/customers?allow_duplicates=true", json=customer(first_name="Missing"))
    assert missing.status_code == 422, missing.json
    assert missing.json["errors"] == {"custom_fields.gate_code": ["Required."]}
    assert session.scalar(select(func.count()).select_from(Customer)) == before  # the row was rolled back

    _change_elsewhere(session, "panel", active=False)
    gone = api.post(
        "/api/v1/customers?allow_duplicates=true",
        json=customer(first_name="Gone", custom_fields={"gate_code": "2", "panel": "DSC"}),
    )
    assert gone.status_code == 422 and gone.json["errors"] == {
        "custom_fields.panel": ["No such custom field for this kind of record."]
    }

    _change_elsewhere(session, "gate_code", required=False, position=5)  # other definitions, same outcome
    _change_elsewhere(session, "panel", active=True)
    made = create(api, customer(first_name="Made", custom_fields={"gate_code": " 3 "}))
    assert made["custom_fields"] == {"gate_code": "3"}
    changes = api.get(f"/api/v1/customers/{made['id']}/history?field=custom_fields").json["items"]
    assert [c["new_value"] for c in changes] == ["gate_code=3"]


def test_a_create_reads_no_definitions_its_process_knows(api, runtime):
    create(api, customer(first_name="First"))
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        create(api, customer(first_name="Second", email="second@example.com"))
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert [s for s in statements if "custom_fields" in s and "INSERT INTO customers" not in s] == []
    assert any("custom_fields d WHERE" in s or "FROM custom_fields WHERE" in s for s in statements)  # in the INSERT


def test_a_record_response_is_the_json_the_customer_schema_would_dump(api, monkeypatch):
    """A record is dumped by converters built once from ``CustomerSchema``: the JSON (values, key order,
    headers) must be the schema's own dump, for every kind of field, a lead and a masked view."""
    define = {"key": "gate", "label": "Gate", "type": "text"}
    assert api.post("/api/v1/custom-fields", json=define).status_code == 201
    full = create(api, customer(**EVERYTHING, custom_fields={"gate": "north"}))
    tag = api.post("/api/v1/tags", json={"name": "VIP", "color": "#ff0000"})
    assert tag.status_code == 201, tag.json
    assert api.post(f"/api/v1/customers/{full['id']}/tags", json={"tag_id": tag.json["id"]}).status_code in (200, 201)
    minimal, prospect = create(api, customer(first_name="Min")), create(api, lead(email="l@example.com"))
    masked = api.as_(identity_with("customers.view", "tags.view", locations=(1,)))
    reads = [(api, f"/api/v1/customers/{r['id']}") for r in (full, minimal, prospect)]
    reads += [(masked, f"/api/v1/customers/{full['id']}"), (api, f"/api/v1/leads/{prospect['id']}")]
    fast = [client.get(path) for client, path in reads]
    monkeypatch.setattr(api_customers, "_dump_record", api_customers.CustomerSchema().dump)
    slow = [client.get(path) for client, path in reads]
    assert fast[0].json["tags"] and fast[0].json["custom_fields"] == {"gate": "north"} and fast[3].json["ssn"]
    for one, other in zip(fast, slow, strict=True):
        assert one.status_code == other.status_code == 200
        assert one.get_data(as_text=True) == other.get_data(as_text=True)
        assert {**one.headers, "X-Request-ID": ""} == {**other.headers, "X-Request-ID": ""}


def test_a_created_record_answers_its_empty_tags_unread(api):
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        made = create(api, customer(first_name="Tagless"))
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert made["tags"] == [] and not [s for s in statements if "customer_tags" in s]
    assert api.get(f"/api/v1/customers/{made['id']}").json == made
