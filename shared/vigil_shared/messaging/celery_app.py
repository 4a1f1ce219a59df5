"""The one way a Vigil process builds its Celery app.

At-least-once settings everywhere: late acks, redelivery when a worker dies, a short prefetch,
JSON only. Each service consumes its own queue and nothing else.
"""

from __future__ import annotations

import socket
from typing import Any

from celery import Celery
from kombu import Connection, Exchange, Queue

from ..config import Settings
from . import sqlite_broker  # registers the embedded ``sqlite://`` transport with kombu

# Seconds a delivered, unacknowledged message stays invisible to other consumers of the embedded broker.
# The holder renews it every third of that while alive; a killed holder's messages come back after it.
EMBEDDED_VISIBILITY_TIMEOUT = 30

# Seconds a publish (the relay's, a task's retry) may wait for the broker, confirm included. Without a
# bound a publish on a connection the broker dropped can wait for ever (celery/celery#9259), and the
# relay or the worker with it; bounded, it fails, and the relay's next cycle or the task retries.
PUBLISH_TIMEOUT = 10

# Seconds a pooled task may run before its process is replaced and the message redelivered: a task
# stuck past every database and broker timeout above must not stop its queue for good.
TASK_TIME_LIMIT = 120


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith(f"{sqlite_broker.SCHEME}:"):
        return {"visibility_timeout": EMBEDDED_VISIBILITY_TIMEOUT, "polling_interval": 0.05}
    if settings.broker_url.startswith("filesystem:"):  # kombu's own: kept for comparison, not recommended
        folder = settings.broker_dir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "control").mkdir(exist_ok=True)
        return {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.1,
        }
    if settings.broker_url.startswith(("amqp:", "pyamqp:")):
        return {"confirm_publish": True}
    return {}


def make_celery(settings: Settings) -> Celery:
    queue = settings.queue_name()
    embedded = settings.broker_url.startswith(f"{sqlite_broker.SCHEME}:")
    app = Celery(f"vigil-{settings.name}", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A few messages ahead per worker process, so it never waits for the broker's next delivery
        # after an ack (one at a time, that round trip bounded RabbitMQ's drain rate). Still at least
        # once: they stay unacknowledged until done and come back if the worker dies (RabbitMQ on the
        # closed connection; the embedded broker when their renewed leases lapse).
        worker_prefetch_multiplier=4,
        # Embedded, one worker process (the default): run the task in it. A pool of one child costs two
        # process wake-ups per task, which on a busy machine, not the task, bounded the drain rate.
        # Not on RabbitMQ: Celery's solo loop there drained a few events per second (measured).
        worker_pool="solo" if embedded and settings.worker_concurrency == 1 else "prefork",
        task_time_limit=TASK_TIME_LIMIT,
        task_default_queue=queue,
        task_queues=[Queue(queue, Exchange(queue, type="direct"), routing_key=queue, durable=True)],
        task_create_missing_queues=True,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,  # the embedded broker has no fanout pidbox; health is served over HTTP
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app


def run_worker(app: Celery, *, name: str, queue: str, concurrency: int, loglevel: str, pool: str | None = None) -> int:
    """Consumes ``queue`` until stopped, as `celery worker -Q <queue> -c <concurrency> -n <name>@%h
    [-P <pool>] --without-mingle --without-gossip --without-heartbeat` would, and returns its exit status.

    Started without Celery's command line: importing it (click-repl, prompt_toolkit, pygments) added
    9 MB to every worker process (bench/bench_idle_rss.py)."""
    worker = app.Worker(
        hostname=f"{name}@{socket.gethostname()}",  # what `-n <name>@%h` expands to
        loglevel=loglevel,
        queues=[queue],
        concurrency=concurrency,
        pool_cls=pool,  # None: the app's worker_pool
        optimization="default",
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


def send_to_queue(
    app: Celery, task_name: str, queue: str, args: list[Any], headers: dict[str, Any] | None = None
) -> None:
    app.send_task(
        task_name,
        args=args,
        queue=Queue(queue, Exchange(queue, type="direct"), routing_key=queue),
        headers=headers or {},
        retry=True,
        timeout=PUBLISH_TIMEOUT,
        confirm_timeout=PUBLISH_TIMEOUT,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    )


def ping_broker(settings: Settings, timeout: float = 2.0) -> None:
    if settings.broker_url.startswith(f"{sqlite_broker.SCHEME}:"):
        sqlite_broker.ping(settings.broker_url)
        return
    if settings.broker_url.startswith("filesystem:"):
        broker_transport_options(settings)  # makes sure the folder exists
        probe = settings.broker_dir / ".ready-probe"
        probe.write_text("ok")
        probe.unlink()
        return
    with Connection(
        settings.broker_url, connect_timeout=timeout, transport_options=broker_transport_options(settings)
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
