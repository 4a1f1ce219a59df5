"""Oracles: no filter, relation or answer tells a caller a value they may not see on the record.

A value hidden by a permission (a tag without ``tags.view``, the parent customer without
``customers.sale_info.view``, an SSN or birthdate without its confidential view) must not come
back through a list filter, another endpoint, or whether a write changed anything.
"""

from helpers import create, customer

from vigil_shared.identity import Identity
from vigil_shared.testing import identity_with

EDIT = ("customers.view", "customers.modify", "customers.contact_info.modify")


def as_(api, *permissions, locations=(1,)):
    return api.as_(identity_with(*permissions, locations=locations))


# --- a tag filter ----------------------------------------------------------------------------------


def test_a_tag_filter_finds_nothing_where_the_caller_may_not_see_tags(api):
    """Without ``tags.view`` a record's tags are left out of the list; filtering by a tag's name
    told which records carry it all the same (``?tag=Bad payer`` listing exactly those)."""
    api.post("/api/v1/tags", json={"name": "Bad payer"})
    marked = create(api, customer(first_name="Marked"))
    create(api, customer(first_name="Clean"))
    assert api.post(f"/api/v1/customers/{marked['id']}/tags", json={"name": "Bad payer"}).status_code == 201

    reader = as_(api, "customers.view")
    listed = reader.get("/api/v1/customers?tag=bad%20payer")
    assert listed.status_code == 200, listed.json
    assert listed.json["total"] == 0 and listed.json["items"] == []
    searched = reader.get("/api/v1/customers?tag=bad%20payer&q=marked")
    assert searched.json["total"] == 0 and searched.json["items"] == []
    assert reader.get("/api/v1/customers").json["total"] >= 2, "the list itself is unchanged"

    tagger = as_(api, "customers.view", "tags.view")
    shown = tagger.get("/api/v1/customers?tag=bad%20payer").json
    assert [c["id"] for c in shown["items"]] == [marked["id"]]


def test_a_tag_filter_reaches_only_the_offices_where_tags_are_seen(api):
    api.post("/api/v1/tags", json={"name": "Key holder"})
    here = create(api, customer(first_name="Here"))
    there = create(api, customer(first_name="There", location_id=2))
    for record in (here, there):
        assert api.post(f"/api/v1/customers/{record['id']}/tags", json={"name": "Key holder"}).status_code == 201
    split = Identity(
        subject="user:split",
        username="split",
        locations={1: frozenset({"customers.view", "tags.view"}), 2: frozenset({"customers.view"})},
    )
    listed = api.as_(split).get("/api/v1/customers?tag=key%20holder").json
    assert [c["id"] for c in listed["items"]] == [here["id"]] and listed["total"] == 1


# --- the parent customer (a sale-information field) --------------------------------------------------


def test_the_family_shows_the_parent_only_to_callers_who_see_sale_information(api):
    """``parent_customer_id`` sits on the sale card, left out of the record without
    ``customers.sale_info.view``; ``/sub-customers`` (and the summary built from it) named the parent
    and listed the sub-customers to any viewer."""
    parent = create(api, customer(last_name="Parentson"))
    sub = create(api, customer(last_name="Subson", parent_customer_id=parent["id"]))

    viewer = as_(api, "customers.view")
    assert "parent_customer_id" not in viewer.get(f"/api/v1/customers/{sub['id']}").json
    of_sub = viewer.get(f"/api/v1/customers/{sub['id']}/sub-customers")
    assert of_sub.status_code == 200, of_sub.json
    assert of_sub.json["parent"] is None and of_sub.json["header"] is None
    assert "Parentson" not in of_sub.get_data(as_text=True)
    of_parent = viewer.get(f"/api/v1/customers/{parent['id']}/sub-customers")
    assert of_parent.json["items"] == [] and of_parent.json["total"] == 0 and of_parent.json["header"] is None
    assert "Subson" not in of_parent.get_data(as_text=True)

    seller = as_(api, "customers.view", "customers.sale_info.view")
    assert seller.get(f"/api/v1/customers/{sub['id']}/sub-customers").json["parent"]["id"] == parent["id"]
    listed = seller.get(f"/api/v1/customers/{parent['id']}/sub-customers").json
    assert [s["id"] for s in listed["items"]] == [sub["id"]] and listed["header"] == "1 sub-customer"


def test_a_sub_customer_is_listed_only_where_its_sale_information_is_seen(api):
    parent = create(api, customer(last_name="Parentson"))
    near = create(api, customer(last_name="Nearsub", parent_customer_id=parent["id"]))
    create(api, customer(location_id=2, last_name="Farsub", parent_customer_id=parent["id"]))
    split = Identity(
        subject="user:split",
        username="split",
        locations={
            1: frozenset({"customers.view", "customers.sale_info.view"}),
            2: frozenset({"customers.view"}),
        },
    )
    listed = api.as_(split).get(f"/api/v1/customers/{parent['id']}/sub-customers")
    assert [s["id"] for s in listed.json["items"]] == [near["id"]], listed.json
    assert "Farsub" not in listed.get_data(as_text=True)


def test_the_parent_picker_tells_no_sub_customer_apart_without_sale_information(api):
    """The picker lists top-level customers only: without ``customers.sale_info.view`` the customers it
    left out were exactly the sub-customers (a link the record hides)."""
    parent = create(api, customer(last_name="Pickparent"))
    sub = create(api, customer(last_name="Picksub", parent_customer_id=parent["id"]))
    loner = create(api, customer(last_name="Picklone"))
    path = f"/api/v1/customers/{loner['id']}/parent-candidates?q=pick"
    editor = as_(api, *EDIT)
    listed = editor.get(path)
    assert listed.status_code == 200, listed.json
    assert listed.json["items"] == [] and listed.json["total"] == 0
    seller = as_(api, *EDIT, "customers.sale_info.view", "customers.sale_info.modify")
    shown = [c["id"] for c in seller.get(path).json["items"]]
    assert parent["id"] in shown and sub["id"] not in shown


# --- a write whose effect depends on a value the caller cannot see ------------------------------------

SECRET = {"ssn": "123-45-6789", "birthdate": "1980-02-03", "abort_code": "4242"}
GUESSES = {
    "ssn": ("123-45-6789", "123-45-6780"),
    "birthdate": ("1980-02-03", "1980-02-04"),
    "abort_code": ("4242", "4243"),
}
RIGHTS = {
    "ssn": ("confidential.ssn.modify",),
    "birthdate": ("confidential.birthdate.modify",),
    "abort_code": (
        "customers.installation_info.view",
        "customers.installation_info.modify",
        "confidential.installation_codes.modify",
    ),
}


def _answer(caller, record_id, field, value):
    before = caller.get(f"/api/v1/customers/{record_id}")
    response = caller.patch(
        f"/api/v1/customers/{record_id}", json={field: value}, headers={"If-Match": before.headers["ETag"]}
    )
    history = caller.get(f"/api/v1/customers/{record_id}/history?field={field}").json["total"]
    return response.status_code, before.headers["ETag"] != response.headers.get("ETag"), history


def test_rewriting_a_value_the_caller_cannot_see_answers_alike_right_or_wrong(api):
    """Whoever may change a saved SSN (or birthdate) without seeing it could send a guess: the right
    one changed nothing (same ETag, no history entry), any other replaced it. Sent by such a caller,
    the value is written either way, so the answer is the same whatever is stored."""
    for field, (right, wrong) in GUESSES.items():
        answers = []
        for guess in (right, wrong):
            record = create(api, customer(**SECRET))
            caller = as_(api, *EDIT, "history.view", *RIGHTS[field])
            answers.append(_answer(caller, record["id"], field, guess))
        assert answers[0] == answers[1], (field, answers)
        assert answers[0][0] == 200


def test_a_caller_who_sees_the_value_still_changes_nothing_by_sending_it_back(api):
    record = create(api, customer(**SECRET))
    caller = as_(api, *EDIT, "history.view", "confidential.ssn.view", "confidential.ssn.modify")
    status, moved, history = _answer(caller, record["id"], "ssn", SECRET["ssn"])
    assert (status, moved) == (200, False) and history == 1  # the create's entry only


def test_a_blocked_unarchive_names_the_parent_only_to_who_may_see_it(api):
    """A sub-customer whose parent is still archived cannot be unarchived (seed 001); the refusal named
    the parent (id and unarchive link) to a caller who may not view it, or not see the link at all."""
    parent = create(api, customer(location_id=2, last_name="Farparent"))
    sub = create(api, customer(last_name="Nearsub", parent_customer_id=parent["id"]))
    assert api.post(f"/api/v1/customers/{parent['id']}/archive", json={"confirm": True}).status_code == 202
    assert api.get(f"/api/v1/customers/{sub['id']}").json["archived_at"] is not None
    path = f"/api/v1/customers/{sub['id']}/unarchive"
    here = as_(api, "customers.view", "customers.unarchive", "customers.sale_info.view")
    blocked = here.post(path, json={"confirm": True})
    assert blocked.status_code == 409 and blocked.json["type"] == "urn:vigil:problem:parent-archived", blocked.json
    assert "parent_customer_id" not in blocked.json and "unarchive" not in blocked.json
    assert f"customer {parent['id']}" not in blocked.json["detail"]
    assert f"/customers/{parent['id']}/" not in blocked.json["detail"]
    both = api.as_(
        Identity(
            subject="user:both",
            username="both",
            locations={
                1: frozenset({"customers.view", "customers.unarchive", "customers.sale_info.view"}),
                2: frozenset({"customers.view"}),
            },
        )
    )
    named = both.post(path, json={"confirm": True})
    assert named.status_code == 409 and named.json["parent_customer_id"] == parent["id"]


# --- an operation's results, read after the rights they came from were lost ------------------------


def _clerk(*rights_by_location: tuple[int, tuple[str, ...]]):
    return Identity(
        subject="user:archivist",
        username="archivist",
        locations={location: frozenset(rights) for location, rights in rights_by_location},
    )


def test_an_operation_shows_its_owner_no_result_where_they_lost_the_right_it_ran_under(api):
    """``GET /operations/{id}`` showed its owner every step's result (what was archived, the appointments
    and invoices cancelled) after the owner lost ``customers.archive`` at a record's office: the rights
    are checked again when it is read, and a step where they are gone shows neither result nor error."""
    parent = create(api, customer(last_name="Nearparent"))
    sub = create(api, customer(last_name="Farsub", location_id=2, parent_customer_id=parent["id"]))
    rights = ("customers.view", "customers.archive")
    started = api.as_(_clerk((1, rights), (2, rights))).post(
        f"/api/v1/customers/{parent['id']}/archive", json={"confirm": True}
    )
    assert started.status_code == 202, started.json
    path = started.headers["Location"].removeprefix("http://localhost")

    def own_steps(caller):
        answer = caller.get(path)
        assert answer.status_code == 200, answer.json
        return answer.json, {
            int(s["target"]["id"]): (s["result"], s["withheld"])
            for s in answer.json["steps"]
            if s["participant"] == "customer"
        }

    whole, steps = own_steps(api.as_(_clerk((1, rights), (2, rights))))
    assert steps[sub["id"]][0]["archived"][0]["id"] == sub["id"] and steps[sub["id"]][1] is False
    assert steps[parent["id"]][1] is False

    _, here_only = own_steps(api.as_(_clerk((1, rights), (2, ("customers.view",)))))
    assert here_only[sub["id"]] == (None, True), "no longer allowed to archive there: withheld"
    assert here_only[parent["id"]][0] == steps[parent["id"]][0]

    body, none = own_steps(api.as_(_clerk((1, ("customers.view",)))))
    assert all(result is None and withheld for result, withheld in none.values())
    assert all(s["result"] is None and s["error"] is None for s in body["steps"])
    assert (body["status"], body["progress"]) == (whole["status"], whole["progress"]), "status stays shown"
    assert api.as_(identity_with("customers.view", "customers.archive", username="other")).get(path).status_code == 404


# --- a property account number ---------------------------------------------------------------------


def test_an_account_number_finds_records_only_where_the_caller_may_see_properties(api, runtime):
    """``q=ACC-…`` told a caller without ``properties.view`` which customer holds that account number."""
    from vigil_customer.tasks import event_consumer
    from vigil_shared.testing import incoming_event

    consumer = event_consumer(runtime)
    here = create(api, customer(last_name="Holderhere"))
    there = create(api, customer(last_name="Holderthere", location_id=2))
    for property_id, record in ((71, here), (72, there)):
        data = {"property_id": property_id, "customer_id": record["id"], "account_number": f"ORA-77{property_id}"}
        assert consumer.consume(incoming_event("property.created", data, source="property"))
    split = api.as_(
        Identity(
            subject="user:split",
            username="split",
            locations={1: frozenset({"customers.view", "properties.view"}), 2: frozenset({"customers.view"})},
        )
    )

    def found(caller, q, path="/api/v1/customers"):
        answer = caller.get(path, query_string={"q": q})
        assert answer.status_code == 200, answer.json
        return [c["id"] for c in answer.json["items"]], answer.json["total"]

    assert found(split, "ora-7771") == ([here["id"]], 1)
    assert found(split, "ora-7772") == ([], 0), "no properties.view where it is"
    assert found(split, "ora") == ([here["id"]], 1)
    assert found(split, "holderthere") == ([there["id"]], 1), "the record itself is listed"
    assert found(as_(api, "customers.view", locations=(1, 2)), "7771") == ([], 0)
    assert found(api, "ora") == ([here["id"], there["id"]], 2), "a service sees every account (by name: here, there)"
