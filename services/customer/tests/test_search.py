"""The list and search: paging with keyset cursors, `q` over every searchable field, filters, totals."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from helpers import create, customer, lead
from sqlalchemy import event, text, update

from vigil_customer import search
from vigil_customer.models import Customer
from vigil_customer.tasks import event_consumer
from vigil_shared.testing import identity_with, incoming_event


def ids(response):
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["items"]]


def next_link(response):
    link = response.headers.get("Link", "")
    for part in link.split(","):
        if 'rel="next"' in part:
            return part.split(";")[0].strip().strip("<>")
    return None


def property_event(event_type, **data):
    return incoming_event(event_type, data, source="property")


@pytest.fixture
def consumer(runtime):
    return event_consumer(runtime)


def page_one_with_statements(engine, query, visibility):
    """Page 1's outcome (rows, total, estimated, cursor, tags) and the statements it sent."""
    statements: list[str] = []

    def sent(_conn, _cursor, statement, *_args):
        statements.append(statement)

    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", sent)
        result = search.list_customers(conn, query, visibility)
        event.remove(conn, "before_cursor_execute", sent)
    outcome = (
        [tuple(getattr(row, column.key) for column in search._LISTED) for row in result.rows],
        result.total,
        result.estimated,
        result.next_cursor,
        result.tags,
    )
    return outcome, statements


def test_twenty_a_page_by_name_with_links_that_walk_every_row(api):
    made = [create(api, customer(first_name=f"N{i:02d}", last_name=f"Smith{i % 7}")) for i in range(45)]
    first = api.get("/api/v1/customers")
    assert first.json["per_page"] == 20 and len(first.json["items"]) == 20
    assert first.json["total"] == 45 and first.json["total_estimated"] is False
    assert 'rel="prev"' not in first.headers["Link"]
    walked, url, pages = [], "/api/v1/customers", 0
    while url:
        response = api.get(url)
        walked += ids(response)
        url = next_link(response)
        pages += 1
    expected = [c["id"] for c in sorted(made, key=lambda c: (c["last_name"].lower(), c["first_name"].lower(), c["id"]))]
    assert walked == expected and pages == 3
    assert ids(api.get("/api/v1/customers?page=2")) == expected[20:40], "a bare page number still works"


def test_page_numbers_reach_the_first_ten_thousand_records_then_point_at_the_cursor(api):
    create(api)
    assert api.get("/api/v1/customers?page=500").status_code == 200  # records 9,981-10,000: an OFFSET of 9,980
    deep = api.get("/api/v1/customers?page=501")
    assert deep.status_code == 422 and "cursor" in str(deep.json)
    assert api.get("/api/v1/customers?page=101&per_page=100").status_code == 422


def test_prev_links_walk_back(api):
    for i in range(30):
        create(api, customer(first_name=f"P{i:02d}"))
    first = api.get("/api/v1/customers?per_page=10&sort=id")
    second = api.get(next_link(first))
    prev_url = [p.split(";")[0].strip().strip("<>") for p in second.headers["Link"].split(",") if 'rel="prev"' in p][0]
    assert ids(api.get(prev_url)) == ids(first)
    assert parse_qs(urlparse(prev_url).query)["page"] == ["1"]


def test_cursors_are_checked(api):
    assert api.get("/api/v1/customers?cursor=garbage").status_code == 422
    create(api)
    create(api)
    page = api.get("/api/v1/customers?per_page=1&sort=id")
    cursor = parse_qs(urlparse(next_link(page)).query)["cursor"][0]
    assert api.get(f"/api/v1/customers?sort=-id&cursor={cursor}").status_code == 422


def test_sorting(api):
    a = create(api, customer(first_name="Zed", last_name="Adams"))
    b = create(api, customer(first_name="Amy", last_name="Zane"))
    c = create(api, customer(first_name="Bob", last_name="Adams"))
    assert ids(api.get("/api/v1/customers?sort=name")) == [c["id"], a["id"], b["id"]]
    assert ids(api.get("/api/v1/customers?sort=-name")) == [b["id"], a["id"], c["id"]]
    assert ids(api.get("/api/v1/customers?sort=id")) == [a["id"], b["id"], c["id"]]
    assert ids(api.get("/api/v1/customers?sort=-id")) == [c["id"], b["id"], a["id"]]
    assert ids(api.get("/api/v1/customers?sort=created")) == [a["id"], b["id"], c["id"]]
    assert ids(api.get("/api/v1/customers?sort=-created&q=adams")) == [c["id"], a["id"]]
    assert api.get("/api/v1/customers?sort=password").status_code == 422


def test_q_matches_the_start_of_names_business_and_dba(api):
    dana = create(api, customer(first_name="Dana", last_name="O'Brien-Smith"))
    shop = create(api, customer(first_name="Kim", last_name="Ng", business_name="Acme Alarms", dba_name="Night Watch"))
    accent = create(api, customer(first_name="José", last_name="Núñez"))
    assert ids(api.get("/api/v1/customers?q=dan")) == [dana["id"]]
    assert ids(api.get("/api/v1/customers?q=obrien")) == [dana["id"]]
    assert ids(api.get("/api/v1/customers?q=smith")) == [dana["id"]]
    assert ids(api.get("/api/v1/customers?q=Dana%20o'brien")) == [dana["id"]]
    assert ids(api.get("/api/v1/customers?q=dana%20ng")) == [], "every word must match"
    assert ids(api.get("/api/v1/customers?q=acme")) == [shop["id"]]
    assert ids(api.get("/api/v1/customers?q=night%20wat")) == [shop["id"]]
    assert ids(api.get("/api/v1/customers?q=nunez")) == [accent["id"]]
    assert ids(api.get("/api/v1/customers?q=N%C3%BA%C3%B1")) == [accent["id"]]
    assert ids(api.get("/api/v1/customers?q=ana")) == [], "matching is by word start"


def test_q_matches_email_phone_digits_and_id(api):
    record = create(
        api, customer(email="Dana.Reyes@Example.com", primary_phone="801-555-0142", cell_phone="(613) 555-0177")
    )
    other = create(api, customer(first_name="Other"))
    for q in (
        "dana.reyes@ex",
        "DANA.REYES@EXAMPLE.COM",
        "example.com",
        "801-555-0142",
        "(801) 555 0142",
        "+1 801 555 0142",
        "8015550142",
        "555-0142",
        "6135550177",
        "613 555",
        f"#{record['id']}",
    ):
        assert ids(api.get("/api/v1/customers", query_string={"q": q})) == [record["id"]], q
    assert record["id"] in ids(api.get("/api/v1/customers", query_string={"q": str(record["id"])}))
    assert other["id"] not in ids(api.get("/api/v1/customers", query_string={"q": f"#{record['id']}"}))


def test_a_phone_searched_as_1_plus_ten_digits_or_with_its_country_code_matches(api):
    """Regression: ``16133742291`` missed while ``+16133742291`` matched; the query is normalised as
    stored numbers are (``phonenumbers``), so every way of typing the number finds it."""
    record = create(api, customer(primary_phone="613-374-2291", state="ON", city="Ottawa"))
    london = create(api, customer(work_phone="+44 20 7946 0958"))
    for q in (
        "16133742291",
        "+16133742291",
        "1 613 374 2291",
        "1-613-374-2291",
        "6133742291",
        "(613) 374-2291",
        "+1 (613) 374-2291",
    ):
        assert ids(api.get("/api/v1/customers", query_string={"q": q})) == [record["id"]], q
    for q in ("+44 20 7946 0958", "+442079460958", "020 7946 0958"[1:]):
        assert ids(api.get("/api/v1/customers", query_string={"q": q})) == [london["id"]], q
    assert ids(api.get("/api/v1/customers", query_string={"q": "16133742292"})) == []


def test_q_matches_property_account_numbers_from_the_replica(api, consumer):
    owner = create(api, customer(first_name="Owner"))
    buyer = create(api, customer(first_name="Buyer"))
    assert consumer.consume(
        property_event("property.created", property_id=10, customer_id=owner["id"], account_number="ACC-1001")
    )
    for q in ("ACC-1001", "acc1001", "1001"):
        assert owner["id"] in ids(api.get("/api/v1/customers", query_string={"q": q})), q
    consumer.consume(
        property_event(
            "property.updated", property_id=10, customer_id=owner["id"], changed=["x"], account_number="ACC-2002"
        )
    )
    assert ids(api.get("/api/v1/customers?q=acc-1001")) == []
    assert ids(api.get("/api/v1/customers?q=acc-2002")) == [owner["id"]]
    consumer.consume(
        property_event(
            "property.transferred",
            property_id=10,
            from_customer_id=owner["id"],
            to_customer_id=buyer["id"],
            account_number="ACC-2002",
        )
    )
    assert ids(api.get("/api/v1/customers?q=acc-2002")) == [buyer["id"]]
    deleted = property_event("property.deleted", property_id=10, customer_id=buyer["id"])
    assert consumer.consume(deleted)
    assert ids(api.get("/api/v1/customers?q=acc-2002")) == []
    assert consumer.consume(deleted) is False, "a repeated event is absorbed by the inbox"
    late = property_event("property.created", property_id=10, customer_id=buyer["id"], account_number="ACC-2002")
    consumer.consume(late)
    assert ids(api.get("/api/v1/customers?q=acc-2002")) == [], "a tombstone keeps a late create out"


def test_renaming_reindexes(api):
    record = create(api, customer(first_name="Old"))
    api.patch(f"/api/v1/customers/{record['id']}", json={"first_name": "Newname"})
    assert ids(api.get("/api/v1/customers?q=old")) == []
    assert ids(api.get("/api/v1/customers?q=newn")) == [record["id"]]


def test_filters(api, session):
    home = create(api, customer(city="Provo", state="UT", account_type="residential"))
    shop = create(
        api,
        customer(
            city="Ottawa", state="ON", zip=None, primary_phone="613-555-0100", account_type="commercial", location_id=2
        ),
    )
    prospect = create(api, lead())
    idle = create(api, customer(active=False))
    session.execute(
        update(Customer)
        .where(Customer.id == idle["id"])
        .values(
            archived_at=datetime.now(UTC),
            created_at=datetime(2020, 1, 1, tzinfo=UTC),
            last_activity_at=datetime(2020, 6, 1, tzinfo=UTC),
        )
    )
    session.commit()
    everyone = {home["id"], shop["id"], prospect["id"], idle["id"]}

    def found(query):
        return set(ids(api.get(f"/api/v1/customers?{query}")))

    assert found("") == everyone
    assert found("kind=lead") == {prospect["id"]}
    assert found("kind=customer") == everyone - {prospect["id"]}
    assert found("active=false") == {idle["id"]}
    assert found("archived=only") == {idle["id"]}
    assert found("archived=none") == everyone - {idle["id"]}
    assert found("archived=all") == everyone
    assert found("location_id=2") == {shop["id"]}
    assert found("location_id=1&location_id=2") == everyone
    assert found("account_type=commercial") == {shop["id"]}
    assert found("city=ottawa") == {shop["id"], prospect["id"]}
    assert found("state=on") == {shop["id"], prospect["id"]}
    assert found("created_to=2021-01-01T00:00:00Z") == {idle["id"]}
    assert found("created_from=2021-01-01T00:00:00Z") == everyone - {idle["id"]}
    assert found("activity_to=2021-01-01T00:00:00Z") == {idle["id"]}
    assert found("activity_from=2021-01-01T00:00:00Z&kind=customer") == {home["id"], shop["id"]}
    assert found("q=dana&active=true") == {home["id"], shop["id"]}
    assert api.get("/api/v1/customers?archived=maybe").status_code == 422
    assert api.get("/api/v1/customers?per_page=101").status_code == 422


def test_totals_are_exact_up_to_the_limit_then_flagged(api, monkeypatch, session):
    for i in range(10):
        create(api, customer(first_name=f"Tot{i}"))
    monkeypatch.setattr(search, "SMALL_RESULT", 2)  # past the one-read path, into the bounded counts
    monkeypatch.setattr(search, "EXACT_TOTAL_LIMIT", 3)
    within = api.get("/api/v1/customers?q=tot1").json
    assert within["total"] == 1 and within["total_estimated"] is False
    monkeypatch.setattr(search, "EXACT_TOTAL_LIMIT", 1)
    listed = api.get("/api/v1/customers?per_page=2").json
    searched = api.get("/api/v1/customers?per_page=2&q=reyes").json
    if session.get_bind().dialect.name == "postgresql":
        for body in (listed, searched):
            assert body["total_estimated"] is True and body["total"] >= 2
    else:
        for body in (listed, searched):
            assert body["total"] == 10 and body["total_estimated"] is False
    assert len(searched["items"]) == 2


def test_a_record_matching_twice_is_listed_and_counted_once(api):
    record = create(
        api,
        customer(
            first_name="John", last_name="Johnson", email="john.johnson@example.com", business_name="Johnson Johns"
        ),
    )
    response = api.get("/api/v1/customers?q=john").json
    assert [item["id"] for item in response["items"]] == [record["id"]] and response["total"] == 1


def test_query_tokens():
    assert search.query_tokens("(613) 555-1234") == ["6135551234"]
    assert search.query_tokens("+1 613 555 1234") == ["6135551234"]
    assert search.query_tokens("Dana  O'Brien") == ["dana", "o'brien"]
    assert search.query_tokens("ACC-1001") == ["acc-1001"]
    assert search.query_tokens("1001") == ["1001"]
    assert search.query_tokens("  ,  ") == []


def test_a_search_is_at_most_ten_different_words(api):
    """Each word is one more condition joined to the others: 100 one-letter words (or a few characters
    folding into many words: U+FDFA is four) kept the request and a database connection busy for seconds."""
    assert search.query_tokens("a " * 100) == ["a"]
    assert len(search.query_tokens("\ufdfa")) == 4 and len(search.query_tokens("\ufdfa" * 50)) == 5
    record = create(api, customer(first_name="Dana", last_name="Reyes"))
    found = api.get("/api/v1/customers", query_string={"q": "dana " * 30 + "reyes"})
    assert found.status_code == 200 and [i["id"] for i in found.json["items"]] == [record["id"]]
    refused = api.get("/api/v1/customers", query_string={"q": " ".join(f"w{i}" for i in range(11))})
    assert refused.status_code == 422 and refused.json["errors"] == {"q": ["At most 10 different words."]}
    assert api.get("/api/v1/customers", query_string={"q": " ".join(f"w{i}" for i in range(10))}).status_code == 200


def test_a_list_filters_by_at_most_ten_tags(api):
    """Each tag filter is one more condition: 600 of them (one tag repeated will do) kept the request busy
    for seconds. A tag named twice counts once, and more than 10 answer 422."""
    vip = api.post("/api/v1/tags", json={"name": "VIP"}).json
    tagged = create(api, customer(first_name="Tagged"))
    create(api, customer(first_name="Plain"))
    api.post(f"/api/v1/customers/{tagged['id']}/tags", json={"tag_id": vip["id"]})
    found = api.get("/api/v1/customers", query_string=[("tag", "vip"), ("tag", " VIP ")])
    assert found.status_code == 200 and [i["id"] for i in found.json["items"]] == [tagged["id"]]
    refused = api.get("/api/v1/customers", query_string=[("tag", "vip")] * 11)
    assert refused.status_code == 422 and set(refused.json["errors"]) == {"tag"}


def test_an_empty_query_after_folding_returns_nothing(api):
    create(api)
    response = api.get("/api/v1/customers", query_string={"q": "..."})
    assert response.status_code == 200 and response.json["total"] == 0


def test_recent_records_sort_by_created(api, session):
    old = create(api)
    new = create(api)
    session.execute(
        update(Customer).where(Customer.id == old["id"]).values(created_at=datetime.now(UTC) - timedelta(days=3))
    )
    session.commit()
    assert ids(api.get("/api/v1/customers?sort=-created")) == [new["id"], old["id"]]


def test_pages_stay_distinct_when_records_match_many_times(api):
    made = [
        create(
            api,
            customer(
                first_name="John",
                last_name=f"Johnson{i}",
                email=f"john.johnson{i}@example.com",
                business_name="Johnson Johns Johnny",
            ),
        )
        for i in range(3)
    ]
    seen, url = [], "/api/v1/customers?q=john&per_page=1"
    while url:
        response = api.get(url)
        seen += ids(response)
        url = next_link(response)
    assert seen == [c["id"] for c in made]


def test_small_and_large_result_paths_agree(api, monkeypatch):
    made = [create(api, customer(first_name=f"Same{i}", last_name="Pathway")) for i in range(7)]
    small = [ids(api.get(f"/api/v1/customers?q=pathway&per_page=3&page={n}")) for n in (1, 2, 3)]
    walked_small, url = [], "/api/v1/customers?q=pathway&per_page=3"
    while url:
        response = api.get(url)
        walked_small += ids(response)
        url = next_link(response)
    monkeypatch.setattr(search, "SMALL_RESULT", 1)
    walked_large, url = [], "/api/v1/customers?q=pathway&per_page=3"
    while url:
        response = api.get(url)
        walked_large += ids(response)
        url = next_link(response)
    expected = [c["id"] for c in made]
    assert walked_small == walked_large == expected == [i for page in small for i in page]
    assert ids(api.get("/api/v1/customers?q=same%20pathway")) == expected, "two words, walking the first"
    assert ids(api.get("/api/v1/customers?q=pathway&sort=-name")) == expected[::-1]


def test_covered_lengths():
    covered = search.covered_lengths({"john", "johnson", "john.johnson@x.com", "x.com", "#7"})
    assert covered == {"john": 0, "johnson": 4, "john.johnson@x.com": 4, "x.com": 0, "#7": 0}


def test_the_ordered_walk_folds_records_matching_twice(api, monkeypatch):
    monkeypatch.setattr(search, "SMALL_RESULT", 1)
    test_pages_stay_distinct_when_records_match_many_times(api)


@pytest.mark.parametrize(
    "payload",
    [
        {"s": "created", "d": "next", "p": 2, "k": ["garbage", 1]},  # not a timestamp
        {"s": "created", "d": "next", "p": 2, "k": [1, 1]},
        {"s": "name", "d": "next", "p": 2, "k": []},  # too short
        {"s": "name", "d": "next", "p": 2, "k": [{"a": 1}, "x"]},
        {"s": "name", "d": "next", "p": 2, "k": ["a", 10**30]},  # an id no column holds
        {"s": "id", "d": "next", "p": 2, "k": ["x"]},
        {"s": "id", "d": "next", "p": 2, "k": [1, 2]},
        {"s": "id", "d": "next", "p": "2", "k": [1]},
        {"s": "id", "d": "next", "p": 10**30, "k": [1]},
    ],
)
def test_a_made_up_cursor_is_a_422_not_a_500(api, payload):
    """A cursor is opaque, but a client can decode and edit it: whatever it holds is judged, never crashes."""
    import base64
    import json

    create(api)
    cursor = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    for q in ("", "&q=dana"):
        response = api.get(f"/api/v1/customers?sort={payload['s']}&cursor={cursor}{q}")
        assert response.status_code == 422, response.get_data(as_text=True)
        assert response.json["errors"]["cursor"]


def test_a_pages_items_are_the_json_the_list_item_schema_would_dump(api, app, session):
    """The list dumps its items without marshmallow (page 1's CPU): the JSON must be the schema's own."""
    from vigil_customer import present
    from vigil_customer.schemas import CustomerListItemSchema

    tag = api.post("/api/v1/tags", json={"name": "VIP"}).json
    tagged = create(api, customer(first_name="Tagged", account_type="commercial", business_name="Acme"))
    api.post(f"/api/v1/customers/{tagged['id']}/tags", json={"tag_id": tag["id"]})
    create(api, customer(first_name="Plain", email=None))
    archived = create(api, customer(first_name="Gone"))
    session.execute(update(Customer).where(Customer.id == archived["id"]).values(archived_at=datetime.now(UTC)))
    session.commit()
    listed = api.get("/api/v1/customers").json["items"]
    assert len(listed) == 3 and any(item["archived_at"] for item in listed) and any(item["tags"] for item in listed)
    with app.test_request_context():
        rows = search.list_customers(session.connection(), search.ListQuery(), search.Visibility(None, None)).rows
        tags = search.tags_of(session, [row.id for row in rows])
        expected = CustomerListItemSchema(many=True).dump(
            [present.list_item(row, tags.get(row.id, [])) for row in rows]
        )
    assert listed == expected
    untagged = api.as_(identity_with("customers.view", locations=(1,))).get("/api/v1/customers").json["items"]
    assert untagged and all("tags" not in item for item in untagged), "no tags.view: no tags key, as the schema"


def _intersected_as_before(session, q, visibility):
    """The records of a several-word search as the ``INTERSECT`` of each word's matches found them
    before the semi-join (the old statement, rebuilt here)."""
    from sqlalchemy import intersect, select

    from vigil_customer.models import SearchTerm

    terms = SearchTerm.__table__

    def scoped(token, i):  # (each word's values are parameters named by its place)
        conditions = [search._token_condition(terms, token, i)]
        seen = visibility.condition(terms.c.kind, terms.c.location_id)
        if seen is not None:
            conditions.append(seen)
        return select(terms.c.customer_id.label("id"), terms.c.sort_name.label("sort_name")).where(*conditions)

    both = intersect(*[scoped(token, i) for i, token in enumerate(search.query_tokens(q))]).subquery()
    return sorted(session.execute(select(both.c.id, both.c.sort_name)).all(), key=lambda r: (r.sort_name, r.id))


def create_person(api, first: str, last: str, business: str | None, location: int, suffix: int) -> dict:
    """A record named ``first last`` (commercial with ``business``), its email made unique by ``suffix``."""
    return create(
        api,
        customer(
            first_name=first,
            last_name=last,
            business_name=business,
            account_type="commercial" if business else "residential",
            location_id=location,
            email=f"{first}.{last}{suffix}@smith.example".lower(),
        ),
    )


@pytest.mark.parametrize("small", [True, False])
def test_several_words_find_what_the_intersection_found(api, session, monkeypatch, small):
    """Several words are matched by a semi-join on the record id (the first word's rows whose record
    matches every other word): the same records, in the same order, as the intersection before, on
    the small-result path and on the ordered walk, whichever field each word matches."""
    words = [("James", "Smith", None), ("Jameson", "Smithers", "Smith Alarm"), ("Smith", "James", None)]
    for location in (1, 2):
        for first, last, business in words:
            create_person(api, first, last, business, location, suffix=location)
    if not small:
        monkeypatch.setattr(search, "SMALL_RESULT", 1)
    scopes = [search.Visibility(None, None), search.Visibility(frozenset({2}), frozenset({2}))]
    queries = [
        "james smith",
        "smith james",
        "jam smi",
        "smith smith.example",
        "james smith alarm",
        "jameson smi",
        "ja sm",
    ]
    for visibility in scopes:
        for q in queries:
            expected = [row.id for row in _intersected_as_before(session, q, visibility)]
            listed, cursor = [], None
            while True:
                page = search.list_customers(
                    session.connection(), search.ListQuery(q=q, per_page=2, cursor=cursor), visibility
                )
                listed += [row.id for row in page.rows]
                assert page.total == len(expected), (q, visibility)
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
            assert listed == expected, (q, visibility)
    assert _intersected_as_before(session, "james smith", scopes[0]), "the test searches find something"


def test_a_pages_tags_read_with_its_rows_are_the_tags_of_its_records(api, session):
    """A page's rows carry their tags (one statement): on every path (page 1 kept, a cursor either way,
    another sort, a page number, a search) the items, order and tags are what a separate read gives."""
    tags = [api.post("/api/v1/tags", json={"name": name}).json for name in ("Zulu", "alpha", "Mid")]
    made = [create(api, customer(first_name=f"Tagq{i}", last_name=f"Rowq{i}")) for i in range(5)]
    for record, names in zip(made, [(0, 1, 2), (), (1,), (2, 0), ()], strict=True):
        for n in names:
            assert api.post(f"/api/v1/customers/{record['id']}/tags", json={"tag_id": tags[n]["id"]}).status_code < 300
    expected_tags = search.tags_of(session, [r["id"] for r in made])
    assert [t["name"] for t in expected_tags[made[0]["id"]]] == ["alpha", "Mid", "Zulu"], "by name, as before"
    for args in ("", "sort=-name", "sort=created", "sort=-id", "q=tagq", "q=tagq%20rowq", "page=2", "q=rowq&page=2"):
        search._FIRST_PAGES.clear()
        seen, url = [], f"/api/v1/customers?per_page=2&{args}"
        while url:
            response = api.get(url)
            assert response.status_code == 200, response.json
            for item in response.json["items"]:
                seen.append(item["id"])
                assert item["tags"] == expected_tags.get(item["id"], []), (args, item)
            url = next_link(response)
        if "page=2" not in args:
            assert sorted(seen) == sorted(r["id"] for r in made), args
    back = api.get("/api/v1/customers?per_page=2")
    forward = api.get(next_link(back))
    prev = [part for part in forward.headers["Link"].split(",") if 'rel="prev"' in part][0].split(";")[0].strip("<> ")
    assert ids(api.get(prev)) == ids(back), "a prev cursor gives the page before, tags folded the same way"


def _search_as_seen(session, q, visibility, **filters):
    """Every page of a search walked by its cursors (and page 2 by number): rows, totals, links, tags."""
    seen, cursor = [], None
    while True:
        assert len(seen) < 20, (q, "the cursors walk forward")  # (a key bound to stale values would loop)
        page = search.list_customers(
            session.connection(), search.ListQuery(q=q, per_page=2, cursor=cursor, **filters), visibility
        )
        seen.append(([tuple(row) for row in page.rows], page.total, page.estimated, page.next_cursor, page.tags))
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    jumped = search.list_customers(
        session.connection(), search.ListQuery(q=q, per_page=2, page=2, **filters), visibility
    )
    seen.append(([tuple(row) for row in jumped.rows], jumped.total, jumped.estimated))
    return seen


@pytest.mark.parametrize("path", ["small", "walk", "estimate"])
def test_a_kept_search_statement_finds_what_a_freshly_built_one_finds(api, session, monkeypatch, path):
    """A search of a known shape binds its values to statements kept from an earlier search of that
    shape: whatever the words, scope and filters, it must list, order and count exactly what the
    statements built for it alone do (on the small-result path, the ordered walk, and beyond the
    exact total where the planner's estimate answers)."""
    people = [
        ("James", "Smith", 1, "customer"),
        ("Jameson", "Smithers", 1, "customer"),
        ("Mary", "Jones", 1, "customer"),
        ("Mary", "Johnson", 2, "customer"),
        ("Marty", "Jonas", 2, "lead"),
        ("James", "Smith", 2, "lead"),
        ("Robert", "Brown", 1, "customer"),
        ("Roberta", "Browning", 2, "customer"),
        ("Jo", "Sm", 1, "customer"),
    ]
    for i, (first, last, location, kind) in enumerate(people):
        body = (lead if kind == "lead" else customer)(
            first_name=first, last_name=last, location_id=location, email=f"{first}.{last}{i}@mail.example".lower()
        )
        create(api, body)
    if path != "small":
        monkeypatch.setattr(search, "SMALL_RESULT", 1)
    if path == "estimate":
        monkeypatch.setattr(search, "EXACT_TOTAL_LIMIT", 1)
    both, first_only = frozenset({1, 2}), frozenset({1})
    # (first search, the search of the same shape that reuses its statements, scope of each, filters)
    cases = [
        ("smi", "jon", search.Visibility(None, None), search.Visibility(None, None), {}),
        ("james smith", "mary jones", search.Visibility(None, None), search.Visibility(None, None), {}),
        ("mary jo", "james sm", search.Visibility(None, None), search.Visibility(None, None), {}),
        ("mary jo", "robert br", search.Visibility(both, both), search.Visibility(first_only, first_only), {}),
        ("ma", "jo", search.Visibility(first_only, frozenset()), search.Visibility(both, frozenset()), {}),
        ("jam", "mar", search.Visibility(None, first_only), search.Visibility(None, both), {"kind": "lead"}),
        ("smith", "jones", search.Visibility(None, None), search.Visibility(None, None), {"location_id": [2]}),
        ("smith", "jones", search.Visibility(None, None), search.Visibility(None, None), {"kind": "customer"}),
        ("#1", "#3", search.Visibility(None, None), search.Visibility(None, None), {}),
        ("12", "3", search.Visibility(None, None), search.Visibility(None, None), {}),
        ("james smith mail", "mary jones mail", search.Visibility(both, both), search.Visibility(both, both), {}),
        ("mail.example", "james.smith0", search.Visibility(None, None), search.Visibility(None, None), {}),
    ]
    kept_any = False
    for earlier, q, earlier_scope, scope, filters in cases:
        search._KEPT.clear()
        search._LARGE.clear()  # (page 1 of each run read in the same form)
        _search_as_seen(session, earlier, earlier_scope, **filters)
        kept = dict(search._KEPT)
        assert len(kept) == 1, (earlier, "is kept by its shape")
        found_kept = _search_as_seen(session, q, scope, **filters)
        assert kept == search._KEPT, (q, "reused the statements kept for", earlier)
        search._KEPT.clear()
        search._LARGE.clear()
        found_fresh = _search_as_seen(session, q, scope, **filters)
        assert found_kept == found_fresh, (q, earlier, filters)
        kept_any |= any(page[0] for page in found_kept)
    assert kept_any, "the searches find something"
    search._KEPT.clear()
    _search_as_seen(session, "smith", search.Visibility(None, None), city="Provo")
    assert not search._KEPT, "a search filtered on the record's columns (values not named) is never kept"


def _walked_in_steps(monkeypatch):
    """Page 1 read as a page after a cursor is: the ordered walk, the bounded count and the listed rows
    each a statement of their own (what page 1 of a large result was before it became one statement)."""
    monkeypatch.setattr(search, "_first_page", lambda *_args: search._PageOne(None, None, None))


def test_page_one_in_one_statement_is_what_the_ordered_walk_finds(api, session, monkeypatch):
    """Page 1 of a search is one statement (its matches counted; with few, their distinct records
    sorted; with many, the first entries of the ordered walk; the page joined to its listed columns
    and tags), two when a large result is not known as one. Rows, order, tags, total and links must
    be what the walk read step by step gives, whatever the words, sort direction and scope, for
    records matching twice, for a search finding nothing, and for a search remembered as large that
    is small now."""
    tag = api.post("/api/v1/tags", json={"name": "Onestep"}).json
    people = [
        ("James", "Smith", None, 1),
        ("Jameson", "Smithers", "Smith Alarm", 1),
        ("Smith", "James", None, 2),
        ("John", "Johnson", "Johnson Johns", 2),  # matches "john" through four terms
        ("James", "Smith", None, 2),
    ]
    made = [
        create_person(api, first, last, business, location, suffix=i)
        for i, (first, last, business, location) in enumerate(people)
    ]
    for record in made[::2]:
        assert api.post(f"/api/v1/customers/{record['id']}/tags", json={"tag_id": tag["id"]}).status_code < 300
    engine = session.get_bind()

    def page_one(q, sort, visibility):
        outcome, statements = page_one_with_statements(engine, search.ListQuery(q=q, per_page=2, sort=sort), visibility)
        return outcome, len(statements)

    scopes = [search.Visibility(None, None), search.Visibility(frozenset({2}), frozenset({2}))]
    queries = ["james smith", "smith", "john", "jam smi", "smith.example james", "nobody", "james nobody"]
    found_any = False
    for visibility in scopes:
        for q in queries:
            for sort in ("name", "-name"):
                with monkeypatch.context() as patched:
                    _walked_in_steps(patched)
                    walked, _ = page_one(q, sort, visibility)
                monkeypatch.setattr(search, "_LARGE", {})
                # few matches, then (the same records) many: not known as many (the count, then the
                # walk), then known (one statement), then few again (known as many: walked, forgotten)
                for small_result, trips in ((2_000, 1), (1, 2), (1, 1), (2_000, 1), (2_000, 1)):
                    monkeypatch.setattr(search, "SMALL_RESULT", small_result)
                    one, one_statements = page_one(q, sort, visibility)
                    assert one == walked, (q, sort, visibility, small_result)
                    if one[1] or small_result == 2_000:  # (nothing found is never many)
                        assert one_statements == trips, (q, sort, small_result, one_statements)
                found_any |= bool(one[0])
    assert found_any
    monkeypatch.setattr(search, "SMALL_RESULT", 2_000)
    assert page_one("john", "name", scopes[0])[0][1] == 1, "a record matching through several terms counts once"


def test_page_one_of_a_large_result_is_one_statement(api, session, monkeypatch):
    """Page 1 of a search with too many matches for the sorted small result: the same statement counts
    them (the bounded count's first pass) and reads the first entries of the ordered walk with their
    records' listed columns and tags, so page 1 is one round trip once the search is known to be large
    (it was four, then three: that statement, the walk, the listed rows), and two the first time (the
    count and small page's statement, then the walk's page). Rows, order, tags, total and links are
    those of the page of few matches over the same records. When the walked entries repeat records (one matching through
    more terms than the page's look-ahead), the walk is read further as before: still the same page."""
    tag = api.post("/api/v1/tags", json={"name": "Large"}).json
    for i in range(6):
        made = create_person(api, ["James", "Mary", "Ann"][i % 3], "Smith", None, 1 + i % 2, suffix=i)
        if i % 2:
            assert api.post(f"/api/v1/customers/{made['id']}/tags", json={"tag_id": tag["id"]}).status_code < 300
    engine = session.get_bind()

    def page_one(q, sort="name"):
        query = search.ListQuery(q=q, per_page=2, sort=sort)
        return page_one_with_statements(engine, query, search.Visibility(None, None))

    monkeypatch.setattr(search, "EXACT_TOTAL_LIMIT", 100)  # the count's first bound (110) above SMALL_RESULT
    monkeypatch.setattr(search, "_LARGE", {})
    for q in ("smith", "smi", "smi jam", "ann smi"):
        for sort in ("name", "-name"):
            monkeypatch.setattr(search, "SMALL_RESULT", 2_000)
            small, _ = page_one(q, sort)
            monkeypatch.setattr(search, "SMALL_RESULT", 2)  # a large result for the same records
            for trips in (2, 1, 1):  # not known as large: the count, then the walk; then known: one
                large, statements = page_one(q, sort)
                assert large == small, (q, sort)
                assert len(statements) == trips, (q, sort, statements)
            assert small[1] == (6 if " " not in q else 2) and not small[2], (q, small[1:3])
    # first in name order and matching "smi" through seven terms: the look-ahead's six entries hold one record
    for suffix in (6, 7):
        create_person(api, "Smiz", "Aardvark", "Smia Smib Smic Smid Smie Smif", 1, suffix=suffix)
    monkeypatch.setattr(search, "SMALL_RESULT", 2_000)
    small, _ = page_one("smi")
    monkeypatch.setattr(search, "SMALL_RESULT", 2)
    for _known in (False, True):
        large, statements = page_one("smi")
        assert large == small and small[1] == 8, small[1:3]
        assert len(statements) > 2 - _known, "the walk read further"


def test_a_cursor_nested_past_the_parsers_depth_is_a_422_not_a_500(api):
    """Decoding a cursor must not recurse without bound: the field's length bound refuses one nested 5,000 deep."""
    import base64

    cursor = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    response = api.get(f"/api/v1/customers?cursor={cursor}")
    assert response.status_code == 422, response.get_data(as_text=True)


def _pairs_derived_by_the_migration(session) -> set[tuple]:
    """The pair rows migration 0011's backfill derives in SQL from the term table (run in place of the
    stored ones, in the test's transaction)."""
    import importlib.util
    from pathlib import Path

    import vigil_customer

    path = Path(vigil_customer.__file__).parent / "migrations" / "versions" / "0011_search_pairs.py"
    spec = importlib.util.spec_from_file_location("search_pairs_migration", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    dialect = session.get_bind().dialect.name
    session.execute(text("DELETE FROM customer_search_pairs"))
    session.execute(
        text(
            migration.PAIRS_FROM_TERMS.format(
                a=migration.pairable_sql("a", dialect), b=migration.pairable_sql("b", dialect)
            )
        )
    )
    return _stored_pairs(session)


def _stored_pairs(session) -> set[tuple]:
    return set(
        session.execute(
            text(
                "SELECT customer_id, lo, hi, lo_head, hi_head, kind, location_id, sort_name FROM customer_search_pairs"
            )
        ).all()
    )


PAIRED_PEOPLE = [
    # (first, last, business, location, email)
    ("James", "Smith", None, 1, "james.smith@corp.example"),  # the email is covered by "james"
    ("Jameson", "Smithers", "Smith Alarm Systems", 1, None),
    ("Smith", "James", None, 2, "smithjames@corp.example"),  # an email no name word covers
    ("Bob", "Jones", None, 2, "smithbob@mail.example"),  # "smith" only through the email
    ("Mary-Jane", "O'Brien", None, 1, None),  # hyphen and apostrophe: whole words and their parts
    ("Zoëlle", "Åberg", None, 2, None),  # folded to a-z
    ("Anna", "Straße", None, 1, None),  # "straße": its first four characters are letters, not all of it
    ("Lee", "Kim", None, 2, None),  # three-letter names never pair
    ("James", "Smith", None, 2, None),
]


def _walked_pages(session, q: str, visibility, sort: str) -> list[tuple]:
    """Every page of a search by its cursors: rows (listed columns), total, flag, cursors and tags."""
    pages, cursor = [], None
    while True:
        page = search.list_customers(
            session.connection(), search.ListQuery(q=q, per_page=2, sort=sort, cursor=cursor), visibility
        )
        rows = [tuple(getattr(row, column.key) for column in search._LISTED) for row in page.rows]
        pages.append((rows, page.total, page.estimated, page.next_cursor, page.prev_cursor, page.tags))
        if not page.next_cursor:
            return pages
        cursor = page.next_cursor


@pytest.mark.parametrize("small", [True, False])
def test_two_words_of_letters_read_from_the_pair_table_find_what_the_term_ranges_find(api, session, monkeypatch, small):
    """Two words of four letters or more are read from the pair table (``customer_search_pairs``) instead
    of joining each word's range of the term table: the same rows, order, totals, cursors and tags on
    every page, either sort direction (and by date) and scope, on the small result and on the ordered walk, whichever
    field each word matches (a name, a business word, an email no name covers, a domain, folded or
    hyphenated words); a third word is still joined. Without the pair table's rows, the paired searches
    find nothing (the test reads them)."""
    for i, (first, last, business, location, email) in enumerate(PAIRED_PEOPLE):
        made = create_person(api, first, last, business, location, suffix=i)
        if email:
            assert api.patch(f"/api/v1/customers/{made['id']}", json={"email": email}).status_code == 200
    if not small:
        monkeypatch.setattr(search, "SMALL_RESULT", 1)
    scopes = [search.Visibility(None, None), search.Visibility(frozenset({2}), frozenset({2}))]
    paired = [
        "james smith",
        "smith james",
        "jame smit",
        "smith alarm",
        "systems jameson",
        "smith corp",
        "corp smithjames",
        "smithbob mail",
        "mary obrien",
        "maryjane obrien",
        "zoelle aberg",
        "anna stra",
        "james smith example",
        "smith nobody",
    ]
    not_paired = ["anna straße", "lee kim", "jam smi", "jame jameson", "smith smith", "o'brien mary", "james"]
    assert all(search._paired_words(search.query_tokens(q)) for q in paired)
    assert not any(search._paired_words(search.query_tokens(q)) for q in not_paired)
    real = search._paired_words
    found = 0
    for visibility in scopes:
        for q in paired + not_paired:
            for sort in ("name", "-name", "-created"):
                search._KEPT.clear()
                through_pairs = _walked_pages(session, q, visibility, sort)
                monkeypatch.setattr(search, "_paired_words", lambda tokens: None)
                search._KEPT.clear()
                through_terms = _walked_pages(session, q, visibility, sort)
                monkeypatch.setattr(search, "_paired_words", real)
                assert through_pairs == through_terms, (q, visibility, sort)
                found += through_pairs[0][1]
    assert found > 40
    search._KEPT.clear()
    session.execute(text("DELETE FROM customer_search_pairs"))
    assert _walked_pages(session, "smith corp", scopes[0], "name")[0][1] == 0, "read from the pair table"


def test_pairs_written_with_the_terms_are_what_the_migration_derives_from_them(api, session, consumer):
    """The pair rows the service writes (create, rename, a change of location, an account number from the
    property service, a conversion, a delete) are the rows migration 0011's backfill derives from the
    term table, so records written before it search the same as records written after."""
    made = [
        create_person(api, first, last, business, location, suffix=i)
        for i, (first, last, business, location, _) in enumerate(PAIRED_PEOPLE)
    ]
    api.patch(f"/api/v1/customers/{made[0]['id']}", json={"last_name": "Smithson", "location_id": 2})
    api.patch(f"/api/v1/customers/{made[3]['id']}", json={"email": "abcdef.jones@mail.example"})
    assert consumer.consume(
        property_event("property.created", property_id=10, customer_id=made[1]["id"], account_number="ABCD-77")
    )
    assert api.delete(f"/api/v1/customers/{made[2]['id']}").status_code < 300
    session.expire_all()
    stored = _stored_pairs(session)
    assert stored == _pairs_derived_by_the_migration(session)
    by_record = {row[0] for row in stored}
    assert made[2]["id"] not in by_record and made[1]["id"] in by_record
    assert any(row[0] == made[1]["id"] and "abcd-77" in row[1:3] for row in stored), "four letters first: it pairs"
    assert any(row[0] == made[0]["id"] and row[6] == 2 and "smithson" in row[1:3] for row in stored)


# --- account numbers only where the caller may see properties -----------------------------------------


def _accounts_people(api, consumer):
    """Records holding property account numbers, in two offices (name: record)."""
    people = {
        "dana": ("Dana", "Quillby", None, 1, "ACC-4411", "801-555-0101"),
        "evan": ("Evan", "Quillby", None, 2, "ACC-4412", "801-555-0102"),
        "fay": ("Fay", "Quillby", "Unit 4413", 1, "ACC-4413", "801-555-0103"),  # 4413: an own word too
        "hal": ("Hal", "Quillon", None, 2, "ABCD-77", "801-555-0104"),  # abcd-77 pairs (four letters)
        "ivy": ("Ivy", "Quillby", None, 1, "ACC-555", "801-555-0142"),  # 555 prefixes her phone's 5550142
    }
    made = {}
    for i, (key, (first, last, business, location, account, phone)) in enumerate(people.items()):
        made[key] = create(
            api,
            customer(
                first_name=first,
                last_name=last,
                business_name=business,
                account_type="commercial" if business else "residential",
                location_id=location,
                primary_phone=phone,
            ),
        )
        event = property_event(
            "property.created", property_id=900 + i, customer_id=made[key]["id"], account_number=account
        )
        assert consumer.consume(event)
    return made


def _found_ids(session, q, visibility, sort):
    """The ids of every page of a search walked by its cursors, and the total it gave."""
    found, cursor = [], None
    while True:
        page = search.list_customers(
            session.connection(), search.ListQuery(q=q, per_page=2, cursor=cursor, sort=sort), visibility
        )
        found += [row.id for row in page.rows]
        assert page.total == len(set(found)) or page.next_cursor, (q, "the total counts what is listed")
        if not page.next_cursor:
            return found
        cursor = page.next_cursor


ACCOUNT_SEARCHES = {
    # q: (keys found by a caller seeing properties everywhere, keys found by one seeing none)
    "acc-4411": ({"dana"}, set()),
    "acc4412": ({"evan"}, set()),
    "4411": ({"dana"}, set()),
    "4413": ({"fay"}, {"fay"}),  # the business name's word
    "acc-4413": ({"fay"}, set()),
    "acc": ({"dana", "evan", "fay", "ivy"}, set()),
    "quillby acc-4412": ({"evan"}, set()),
    "quillby acc": ({"dana", "evan", "fay", "ivy"}, set()),  # (walked when large: the other word's terms)
    "acc-4411 dana": ({"dana"}, set()),
    "abcd quillon": ({"hal"}, set()),  # the pair table
    "quillon abcd-77": ({"hal"}, set()),
    "555": ({"dana", "evan", "fay", "hal", "ivy"}, {"dana", "evan", "fay", "hal", "ivy"}),  # phones' 555…
    "5550142": ({"ivy"}, {"ivy"}),
    "quillby": ({"dana", "evan", "fay", "ivy"}, {"dana", "evan", "fay", "ivy"}),
}


@pytest.mark.parametrize("path", ["small", "walk"])
def test_an_account_number_finds_a_record_only_where_the_caller_may_see_properties(
    api, session, consumer, monkeypatch, path
):
    """Searching ``q=ACC-4411`` told a caller without ``properties.view`` which customer holds account
    number ACC-4411. Account terms now match only where the caller holds it; a word that is also the
    record's own (a business name's ``4413``) still finds it, and a hidden account number never keeps
    a record's own word from matching (``555`` of ``ACC-555`` prefixing the phone's ``5550142``)."""
    made = _accounts_people(api, consumer)
    by_id = {record["id"]: key for key, record in made.items()}
    if path == "walk":
        monkeypatch.setattr(search, "SMALL_RESULT", 1)
    both = frozenset({1, 2})
    scopes = {
        "everywhere": search.Visibility(both, both, None),
        "both offices": search.Visibility(both, both, both),
        "nowhere": search.Visibility(both, both, frozenset()),
        "office 1 only": search.Visibility(both, both, frozenset({1})),
        "office 2 only (service scope)": search.Visibility(None, None, frozenset({2})),
    }
    for name, visibility in scopes.items():
        for q, (seeing, blind) in ACCOUNT_SEARCHES.items():
            for sort in ("name", "id"):
                search._KEPT.clear()
                search._LARGE.clear()
                found = {by_id[i] for i in _found_ids(session, q, visibility, sort) if i in by_id}
                if visibility.accounts is None or visibility.accounts == both:
                    expected = seeing
                elif not visibility.accounts:
                    expected = blind
                else:
                    expected = blind | {k for k in seeing if made[k]["location_id"] in visibility.accounts}
                assert found == expected, (name, q, sort)


def test_a_kept_search_binds_the_account_locations_as_values(api, session, consumer):
    """The offices where account numbers match are values of a kept statement, not its shape: a search
    kept for one caller's offices finds, for another's, what a freshly built one does."""
    _accounts_people(api, consumer)
    both = frozenset({1, 2})
    first, second = search.Visibility(None, None, frozenset({1})), search.Visibility(None, None, frozenset({2}))
    for earlier, q in (("acc-4411", "acc-4412"), ("quillby acc-4411", "quillby acc"), ("abcd quillon", "abcd quill")):
        search._KEPT.clear()
        search._LARGE.clear()
        _search_as_seen(session, earlier, first)
        kept = dict(search._KEPT)
        found_kept = _search_as_seen(session, q, second)
        assert kept == search._KEPT, (q, "reused the statements kept for", earlier)
        search._KEPT.clear()
        search._LARGE.clear()
        assert found_kept == _search_as_seen(session, q, second), q
    shapes = {
        search.Visibility(both, both, accounts).shape()
        for accounts in (None, both, frozenset(), frozenset({1}), frozenset({2}), frozenset({3}), frozenset({1, 3}))
    }
    assert len(shapes) == 3, "all, none or some offices: three shapes whatever the offices"


def test_terms_carry_their_source_and_own_terms_are_covered_by_own_terms_only(api, session, consumer):
    made = _accounts_people(api, consumer)
    rows = session.execute(
        text("SELECT term, covered, source FROM customer_search_terms WHERE customer_id = :c"), {"c": made["ivy"]["id"]}
    ).all()
    stored = {row.term: (row.covered, row.source) for row in rows}
    assert stored["acc-555"] == (0, 1) and stored["555"] == (0, 1) and stored["acc555"] == (0, 1)
    assert stored["5550142"] == (0, 0), "not covered by the account's 555"
    assert stored["ivy"] == (0, 0)
    fay = dict(
        session.execute(
            text("SELECT term, source FROM customer_search_terms WHERE customer_id = :c"), {"c": made["fay"]["id"]}
        ).all()
    )
    assert fay["4413"] == 0 and fay["acc-4413"] == 1
    pairs = dict(
        session.execute(
            text("SELECT lo || ' ' || hi, source FROM customer_search_pairs WHERE customer_id = :c"),
            {"c": made["hal"]["id"]},
        ).all()
    )
    assert pairs == {"abcd-77 abcd77": 1, "abcd-77 quillon": 1, "abcd77 quillon": 1}, "an account term's pairs"
