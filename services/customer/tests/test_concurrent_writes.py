"""Two concurrent PATCHes of one customer both get an answer, never a 500 (``StaleDataError``).

Both requests are made to read the record before either writes: a barrier in ``before_flush``
holds each request's first write until the other one has reached its own (or, where the first
request's row lock keeps the other from reading, until the barrier gives up). Where rows are
locked (PostgreSQL) both then succeed one after the other; elsewhere the later one gets 409.
Never a 500.
"""

import contextlib
import threading

import pytest
from helpers import create
from sqlalchemy import event
from sqlalchemy.orm import Session

WAIT = 1.0  # how long the first writer waits for a second one that a row lock may be holding back


@pytest.fixture
def racing():
    """Runs callables in threads that meet before their first flush; returns their results."""
    barrier = threading.Barrier(2, timeout=WAIT)
    local = threading.local()

    def meet(session, flush_context, instances):
        if getattr(local, "racing", False) and not getattr(local, "met", False):
            local.met = True
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    event.listen(Session, "before_flush", meet)

    def run(*calls):
        results = [None] * len(calls)

        def worker(index, call):
            local.racing = True
            results[index] = call()

        threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return results

    yield run
    event.remove(Session, "before_flush", meet)


def test_two_concurrent_patches_of_one_customer_never_answer_500(api, racing):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}"
    first, second = racing(
        lambda: api.patch(url, json={"spouse": "Sam"}),
        lambda: api.patch(url, json={"best_time_to_contact": "mornings"}),
    )
    statuses = sorted([first.status_code, second.status_code])
    assert all(status in (200, 409) for status in statuses), (first.json, second.json)
    assert statuses[0] == 200
    final = api.get(url)
    changed = {"spouse": "Sam", "best_time_to_contact": "mornings"}
    kept = {name: value for name, value in changed.items() if final.json[name] == value}
    assert len(kept) == statuses.count(200)  # a 409 changed nothing, a 200 was not lost
    assert final.headers["ETag"] == f'"{record["id"]}.{1 + statuses.count(200)}"'
    for response in (first, second):
        if response.status_code == 409:
            assert response.headers["Content-Type"] == "application/problem+json"


def test_two_concurrent_patches_with_the_same_if_match_let_exactly_one_win(api, racing):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}"
    etag = api.get(url).headers["ETag"]
    first, second = racing(
        lambda: api.patch(url, json={"spouse": "Sam"}, headers={"If-Match": etag}),
        lambda: api.patch(url, json={"spouse": "Max"}, headers={"If-Match": etag}),
    )
    statuses = sorted([first.status_code, second.status_code])
    assert statuses[0] == 200 and statuses[1] in (409, 412), (first.json, second.json)
    winner = first if first.status_code == 200 else second
    assert api.get(url).json["spouse"] == winner.json["spouse"]


def test_a_property_event_reindexing_a_customer_being_deleted_never_deadlocks(api, runtime, monkeypatch):
    """The worker rewrites a record's search terms on ``property.created`` while the record is being
    deleted. The delete holds the record and waits on the terms; a worker that replaced the terms
    before locking the record then waited on the record: a deadlock (a 500, or a 409 with the shared
    mapping) on PostgreSQL. Both now take the record first, so both succeed in turn."""
    from vigil_customer import search
    from vigil_customer.tasks import event_consumer
    from vigil_shared.testing import incoming_event

    if runtime.db.engine.dialect.name != "postgresql":
        pytest.skip("row locks and deadlocks are a PostgreSQL matter; SQLite serialises writes")
    record = create(api)
    terms_replaced, delete_started = threading.Event(), threading.Event()
    real_covered_lengths = search.covered_lengths

    def hold_after_replacing_terms(*args, **kwargs):  # the old terms are deleted, the new not yet written
        terms_replaced.set()
        delete_started.wait(5)
        threading.Event().wait(1.5)  # let the delete reach its lock wait (deadlock_timeout is 1 s)
        return real_covered_lengths(*args, **kwargs)

    monkeypatch.setattr(search, "covered_lengths", hold_after_replacing_terms)
    data = {"property_id": 77, "customer_id": record["id"], "account_number": "ACC-77"}
    event = incoming_event("property.created", data, source="property")
    outcome = {}

    def consume():
        try:
            outcome["consumed"] = event_consumer(runtime).consume(event)
        except Exception as exc:  # noqa: BLE001 - the deadlock is what the test looks for
            outcome["consumed"] = exc

    worker = threading.Thread(target=consume)
    worker.start()
    assert terms_replaced.wait(10)
    delete_started.set()
    deleted = api.delete(f"/api/v1/customers/{record['id']}")
    worker.join(30)
    assert deleted.status_code == 204, deleted.json
    assert not isinstance(outcome["consumed"], Exception), outcome["consumed"]
    assert api.get(f"/api/v1/customers/{record['id']}").status_code == 404


@contextlib.contextmanager
def row_held(runtime, customer_id):
    """Another transaction holding the customer's row (a write not yet committed) until the block ends."""
    from sqlalchemy import text

    with runtime.db.engine.connect() as conn:
        conn.execute(text("UPDATE customers SET version = version WHERE id = :id"), {"id": customer_id})
        try:
            yield
        finally:
            conn.rollback()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "/api/v1/customers/{id}", {"spouse": "Sam"}),
        ("delete", "/api/v1/customers/{id}", None),
        ("post", "/api/v1/customers/{id}/notes", {"body": "hello"}),
        ("post", "/api/v1/customers/{id}/archive", {}),
    ],
)
def test_an_outsiders_write_answers_404_without_waiting_on_a_held_row(api, runtime, method, path, body):
    """The scope is checked before the row is locked: a caller from another office gets the unknown-id
    404 at once while another transaction holds the record. Waiting behind that writer's lock (up to
    the lock timeout) would tell them the record exists."""
    from concurrent.futures import ThreadPoolExecutor

    from vigil_shared.testing import OTHER_LOCATION, identity_with

    record = create(api)
    outsider = api.as_(
        identity_with(
            "customers.view",
            "customers.modify",
            "customers.delete",
            "customers.archive",
            "notes.modify",
            locations=(OTHER_LOCATION,),
        )
    )
    url = path.format(id=record["id"])
    unknown = getattr(outsider, method)(path.format(id=10**9), json=body)
    with ThreadPoolExecutor(1) as pool, row_held(runtime, record["id"]):
        answer = pool.submit(getattr(outsider, method), url, json=body).result(timeout=3)
    assert answer.status_code == unknown.status_code == 404, answer.json
    assert answer.json["title"] == unknown.json["title"] and answer.json["detail"] == unknown.json["detail"]
    assert api.patch(f"/api/v1/customers/{record['id']}", json={"spouse": "Sam"}).status_code == 200
