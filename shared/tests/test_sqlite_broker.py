"""The embedded SQLite broker: whole messages, one consumer per message, nothing lost on a kill.

kombu's filesystem transport, the previous embedded default, failed these: it handed out
half-written files, and deleted a message when fetched (a killed worker lost it).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from kombu import Connection, Exchange, Queue

from vigil_shared.config import Settings
from vigil_shared.messaging import sqlite_broker
from vigil_shared.messaging.celery_app import broker_transport_options, make_celery, ping_broker

QUEUE = Queue("work", Exchange("work", type="direct"), routing_key="work")


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'broker.sqlite'}"


def connection(url: str, visibility_timeout: float = 30) -> Connection:
    return Connection(url, transport_options={"visibility_timeout": visibility_timeout, "polling_interval": 0.01})


def publish(url: str, bodies) -> None:
    with connection(url) as conn:
        producer = conn.Producer(serializer="json")
        for body in bodies:
            producer.publish(body, exchange=QUEUE.exchange, routing_key="work", declare=[QUEUE])


def take(conn: Connection, count: int, timeout: float = 10, ack: bool = True) -> list:
    """Consumes ``count`` messages (acking them or not); returns the kombu messages."""
    got = []

    def on_message(body, message):
        got.append(message)
        if ack:
            message.ack()

    with conn.Consumer(QUEUE, callbacks=[on_message], prefetch_count=0 if not ack else 1):
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.2)
    return got


def nothing_to_take(conn: Connection, within: float = 0.5) -> bool:
    return not take(conn, 1, timeout=within)


def queued(url: str) -> int:
    with connection(url) as conn:
        return conn.default_channel._size("work")


def test_publish_consume_ack_in_order(url):
    publish(url, [{"n": n} for n in range(50)])
    with connection(url) as conn:
        got = take(conn, 50)
    assert [m.payload["n"] for m in got] == list(range(50))
    assert queued(url) == 0


def test_unacked_message_is_leased_not_deleted_and_requeue_makes_it_visible(url):
    publish(url, [{"n": 1}])
    with connection(url) as holder, connection(url) as other:
        [message] = take(holder, 1, ack=False)
        assert queued(url) == 1  # still stored while leased
        assert nothing_to_take(other)  # never delivered twice while leased
        message.reject(requeue=True)
        [again] = take(other, 1)
        assert again.payload == {"n": 1} and again.delivery_info.get("sqlite_id") == message.delivery_info["sqlite_id"]
    assert queued(url) == 0


def test_reject_without_requeue_drops_the_message(url):
    publish(url, [{"n": 1}])
    with connection(url) as conn:
        [message] = take(conn, 1, ack=False)
        message.reject(requeue=False)
        assert nothing_to_take(conn)
    assert queued(url) == 0


def test_closing_a_channel_returns_its_unacked_messages(url):
    publish(url, [{"n": 1}])
    with connection(url) as conn:
        take(conn, 1, ack=False)
    with connection(url) as conn:
        assert [m.payload for m in take(conn, 1)] == [{"n": 1}]


def test_an_expired_lease_makes_the_message_visible_again(url):
    publish(url, [{"n": 1}])
    holder = connection(url, visibility_timeout=0.5)
    holder.default_channel.qos.restore_at_shutdown = False  # a holder that vanishes without a word
    [first] = take(holder, 1, ack=False)
    with connection(url) as other:
        [again] = take(other, 1, timeout=10)  # only after the lease ran out: nobody renews it
    assert again.payload == {"n": 1} and again.delivery_tag != first.delivery_tag  # a new delivery
    assert queued(url) == 0


def test_a_stale_ack_does_not_delete_a_message_redelivered_to_another_consumer(url):
    publish(url, [{"n": 1}])
    holder = connection(url, visibility_timeout=0.3)
    holder.default_channel.qos.restore_at_shutdown = False
    [first] = take(holder, 1, ack=False)
    with connection(url) as other:
        [second] = take(other, 1, ack=False, timeout=10)
        first.ack()
        assert queued(url) == 1  # still held by ``other``
        second.ack()
    assert queued(url) == 0


def test_a_live_holder_renews_its_lease(url):
    publish(url, [{"n": 1}])
    with connection(url, visibility_timeout=0.6) as holder, connection(url) as other:
        got = []
        with holder.Consumer(QUEUE, callbacks=[lambda body, message: got.append(message)], prefetch_count=1):
            deadline = time.monotonic() + 2.0  # over three lease periods
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    holder.drain_events(timeout=0.05)
                assert nothing_to_take(other, within=0.05)
            assert len(got) == 1
            got[0].ack()
    assert queued(url) == 0


def _consume_all(url: str, results, stop) -> None:
    seen = []
    with connection(url) as conn:

        def on_message(body, message):
            seen.append(body["n"])
            message.ack()

        with conn.Consumer(QUEUE, callbacks=[on_message], prefetch_count=1):
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.1)
    results.put(seen)


def test_two_consumer_processes_share_a_queue_without_duplicates_or_losses(url):
    total = 600
    publish(url, [])  # creates the file before the consumers start
    ctx = multiprocessing.get_context("spawn")
    results, stop = ctx.Queue(), ctx.Event()
    consumers = [ctx.Process(target=_consume_all, args=(url, results, stop)) for _ in range(2)]
    for process in consumers:
        process.start()
    publish(url, [{"n": n, "pad": "x" * 20000} for n in range(total)])  # large bodies: never half-read
    deadline = time.monotonic() + 60
    while queued(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    seen = [results.get(timeout=30) for _ in consumers]
    for process in consumers:
        process.join(10)
    assert sorted(seen[0] + seen[1]) == list(range(total))  # each exactly once
    assert seen[0] and seen[1]  # both took part


KILLED_CONSUMER = textwrap.dedent("""
    import sys, time
    from kombu import Connection, Exchange, Queue
    import vigil_shared.messaging.sqlite_broker
    queue = Queue("work", Exchange("work", type="direct"), routing_key="work")
    with Connection(sys.argv[1], transport_options={"visibility_timeout": 600}) as conn:
        def on_message(body, message):
            print("holding", body["n"], flush=True)
        with conn.Consumer(queue, callbacks=[on_message], prefetch_count=1):
            while True:
                try:
                    conn.drain_events(timeout=0.1)
                except TimeoutError:
                    pass
""")


def test_a_message_held_by_a_consumer_killed_with_sigkill_is_delivered_again(url):
    publish(url, [{"n": 7}])
    child = subprocess.Popen([sys.executable, "-c", KILLED_CONSUMER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().split() == ["holding", "7"]
        with connection(url, visibility_timeout=600) as other:
            assert nothing_to_take(other, within=0.3)  # leased to a live process
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            # The lease lasts 10 minutes, yet the message comes back within seconds: its owner is gone.
            [again] = take(other, 1, timeout=10)
        assert again.payload == {"n": 7}
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
    assert queued(url) == 0


def test_the_embedded_default_is_the_sqlite_broker(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("VIGIL_BROKER_URL", raising=False)
    settings = Settings.from_env("customer", internal_secret="s" * 40, encryption_keys=("k",), blind_index_key="b")
    assert settings.broker_url == f"sqlite:///{tmp_path / 'broker.sqlite'}"
    assert broker_transport_options(settings)["visibility_timeout"] > 0
    ping_broker(settings)  # creates and opens the file
    assert (tmp_path / "broker.sqlite").exists()


def test_celery_tasks_round_trip_through_the_sqlite_broker(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_VAR_DIR", str(tmp_path))
    settings = Settings.from_env(
        "customer",
        internal_secret="s" * 40,
        encryption_keys=("k",),
        blind_index_key="b",
        broker_url=f"sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    app = make_celery(settings)
    app.send_task("customer.handle_event.v1", args=[{"hello": 1}], queue=settings.queue_name())
    with app.connection_for_read() as conn:
        queue = Queue(
            settings.queue_name(), Exchange(settings.queue_name(), type="direct"), routing_key=settings.queue_name()
        )
        got = []
        with conn.Consumer(queue, callbacks=[lambda body, m: (got.append(body), m.ack())], accept=["json"]):
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.2)
    assert got and got[0][0] == [{"hello": 1}]


def test_a_url_without_a_file_is_refused():
    with pytest.raises(ValueError):
        sqlite_broker.database_path("sqlite://")


def test_an_ack_from_another_thread_wakes_the_consumer_at_once(url):
    """As in a Celery worker: the task runs elsewhere, the ack frees the prefetch slot. kombu's loop
    slept a whole polling interval before the next message (a worker drained 19 events/s)."""
    import queue as queues
    import threading

    count = 50
    publish(url, [{"n": n} for n in range(count)])
    handed = queues.Queue()
    done = []

    def pool():
        while len(done) < count:
            message = handed.get(timeout=30)
            done.append(message.payload["n"])
            message.ack()

    conn = Connection(url, transport_options={"polling_interval": 0.5})
    worker = threading.Thread(target=pool, daemon=True)
    worker.start()
    started = time.monotonic()
    with conn, conn.Consumer(QUEUE, callbacks=[lambda body, message: handed.put(message)], prefetch_count=1):
        while len(done) < count and time.monotonic() - started < 60:
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=1)
    elapsed = time.monotonic() - started
    assert done == list(range(count))
    assert elapsed < count * 0.5 / 5, f"{elapsed:.1f}s for {count} messages"  # was >= count × polling interval
