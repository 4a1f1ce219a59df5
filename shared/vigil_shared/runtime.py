"""One service's command line: migrate, web, worker, relay, rotate-keys, revision.

Every service is the same program with different models, views and handlers, so the process
entry points live here once; a service's ``app.py`` only names its parts (:class:`ServiceProgram`).
This is the top of ``vigil_shared``: it assembles the runtime objects (:mod:`vigil_shared.service`),
the web app (:mod:`vigil_shared.web`) and the operator endpoints (:mod:`vigil_shared.ops`).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flask import Flask

from .config import ConfigError, Settings, default_port, env, env_int
from .health import run_checks
from .idempotency import register_idempotency
from .logs import configure_logging
from .messaging.outbox import MessagingModels, OutboxRelay
from .ops import ops_blueprint

# Re-exported: services and tests name them from here.
from .service import EXTENSION, ServiceRuntime, current_runtime  # noqa: F401
from .web import create_service_app

log = logging.getLogger("vigil.runtime")


def serve_health(host: str, port: int, name: str, checks: dict[str, Callable[[], None]]) -> ThreadingHTTPServer:
    """``/healthz`` and ``/readyz`` for processes that are not web apps (workers, relays)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            body: dict[str, Any]
            if self.path == "/healthz":
                status, body = 200, {"status": "ok", "process": name}
            elif self.path == "/readyz":
                report, ready = run_checks(checks)
                status, body = (
                    (200 if ready else 503),
                    {"status": "ready" if ready else "unavailable", "checks": report},
                )
            else:
                status, body = (
                    404,
                    {
                        "type": "about:blank",
                        "title": "Not Found",
                        "status": 404,
                        "detail": "Only /healthz and /readyz are served here.",
                    },
                )
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if status != 404 else "application/problem+json")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:  # health probes would drown the logs
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"{name}-health", daemon=True).start()
    return server


def run_gunicorn(app_factory: Callable[[], Flask], settings: Settings) -> None:
    """Serves the app with gunicorn's threaded worker, whose own refusals (414, 431, 400) are problem+json."""
    from gunicorn.app.base import BaseApplication

    from .gunicorn_worker import JsonGunicornLogger, ProblemThreadWorker

    class VigilWeb(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type information
        def load_config(self) -> None:
            options = {
                "bind": f"{settings.bind_host}:{settings.port}",
                "workers": settings.web_workers,
                "threads": settings.web_threads,
                "worker_class": ProblemThreadWorker.recycling(
                    settings.web_recycle_rss_mb, settings.web_recycle_idle_seconds
                ),
                "accesslog": None,  # the app logs one JSON line per request itself
                "errorlog": "-",
                "logger_class": JsonGunicornLogger,  # gunicorn's own lines as JSON lines too
                # gunicorn's control socket is one path per user ($HOME/.gunicorn/gunicorn.ctl): every web
                # process of every Vigil on the machine took it from the one before; the runner,
                # compose or Kubernetes supervise them instead
                "control_socket_disable": True,
                "loglevel": settings.log_level.lower(),
                "timeout": 60,
                "graceful_timeout": 10,
                "keepalive": 75,
                "proc_name": f"vigil-{settings.name}",
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return app_factory()

    # Everything the master imported is shared with the workers it forks until a page is written. The
    # cyclic garbage collector writes into every object it visits, so a worker's first full collection
    # (building its app allocates enough for one) copied the master's pages: frozen, the collector
    # leaves them alone (bench/bench_idle_rss.py: a web worker's own pages 39 MB unfrozen, PSS below).
    gc.freeze()
    VigilWeb().run()


@dataclass
class ServiceProgram:
    """The parts that make one service; ``main`` turns them into the ``vigil-<name>`` command."""

    name: str
    messaging: MessagingModels
    blueprints: list[Any] = field(default_factory=list)  # flask-smorest Blueprints
    register_tasks: Callable[[ServiceRuntime], None] = lambda runtime: None
    encrypted_columns: list[Any] = field(default_factory=list)  # model attributes holding FieldCipher tokens
    # what else ``rotate-keys`` re-encrypts under the first key (the customer service's stored files): a count
    rotate_more: Callable[[ServiceRuntime], int] | None = None
    multipart_endpoints: frozenset[str] = frozenset()  # endpoints taking multipart/form-data (uploads)
    # a Celery beat (``<name> beat``) sending the periodic tasks ``register_tasks`` puts in ``beat_schedule``
    beat: bool = False
    # a worker whose tasks wait on outside systems: a pool of this many threads (read from the settings at
    # start) instead of VIGIL_WORKER_CONCURRENCY processes. Celery's time limit does not apply to threads:
    # every wait of such tasks must be bounded by their own timeouts.
    worker_threads: Callable[[], int] | None = None

    @property
    def package(self) -> str:
        """The service's Python package, where its migrations live: ``vigil_<name>``."""
        return f"vigil_{self.name}"

    def create_app(self, settings: Settings | None = None) -> Flask:
        runtime = self.runtime(settings)
        app = create_service_app(
            self.name,
            runtime.settings,
            runtime.db,
            [*self.blueprints, ops_blueprint(self.name)],
            runtime.web_ready_checks(),
            multipart_endpoints=frozenset(self.multipart_endpoints),
        )
        app.extensions[EXTENSION] = runtime
        register_idempotency(app, runtime.db, runtime.messaging.IdempotencyRecord, runtime.cipher)
        return app

    def runtime(self, settings: Settings | None = None) -> ServiceRuntime:
        return ServiceRuntime.build(settings or Settings.from_env(self.name), self.messaging)

    def main(self, argv: list[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=f"vigil-{self.name}", description=f"Vigil {self.name} service")
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("migrate", help="apply database migrations")
        commands.add_parser("web", help="serve the HTTP API with gunicorn")
        commands.add_parser("worker", help="run the Celery worker of this service's queue")
        commands.add_parser("relay", help="publish the transactional outbox")
        commands.add_parser("rotate-keys", help="re-encrypt confidential fields under the first encryption key")
        if self.beat:
            commands.add_parser("beat", help="send this service's periodic tasks (one beat per installation)")
        rev = commands.add_parser("revision", help="autogenerate a migration from the models")
        rev.add_argument("-m", "--message", required=True)
        args = parser.parse_args(argv)
        try:
            settings = Settings.from_env(self.name)
        except ConfigError as exc:
            print(f"vigil-{self.name}: {exc}", file=sys.stderr)
            return 2
        configure_logging(settings.log_level, process=f"{self.name}-{args.command}")
        if args.command in ("migrate", "revision"):
            from . import migrations  # alembic only where it is used: the long-running processes stay smaller

        if args.command == "migrate":
            migrations.upgrade(self.package, settings.database_url)
            log.info("migrations applied", extra={"service": self.name})
        elif args.command == "revision":
            migrations.revision(self.package, settings.database_url, args.message)
        elif args.command == "rotate-keys":
            runtime = self.runtime(settings)
            rotated = rotate_keys(runtime, [*self.encrypted_columns, self.messaging.DeadLetter.message])
            if self.rotate_more is not None:
                rotated += self.rotate_more(runtime)
            print(f"re-encrypted {rotated} value(s) under the current key")
        elif args.command == "web":
            run_gunicorn(lambda: self.create_app(settings), settings)
        elif args.command == "worker":
            return self._run_worker(settings)
        elif args.command == "relay":
            self._run_relay(settings)
        elif args.command == "beat":
            self._run_beat(settings)
        return 0

    def _run_worker(self, settings: Settings) -> int:
        from .messaging.celery_app import run_worker  # noqa: PLC0415 - not in web processes (service.py)

        runtime = self.runtime(settings)
        self.register_tasks(runtime)
        # The engine (and with it the SQLAlchemy dialect and the database driver, imported on first use)
        # is built here, before the health thread and the pool's forks; a fork still waits for a running
        # check (health.FORK_GUARD), so a child never inherits a lock, an import's included, held by one.
        runtime.db.engine  # noqa: B018
        serve_health(settings.bind_host, settings.worker_health_port, f"{self.name}-worker", runtime.ready_checks())
        threads = self.worker_threads() if self.worker_threads else None
        return run_worker(
            runtime.celery,
            name=self.name,
            queue=settings.queue_name(),
            # `-P threads -c <threads>` when the service runs its tasks on threads
            concurrency=threads or settings.worker_concurrency,
            loglevel=settings.log_level,
            pool="threads" if threads else None,
        )

    def _run_beat(self, settings: Settings) -> None:
        """A second beat, or one firing twice, must be harmless: each periodic task is idempotent by its
        own key (billing: a period is issued once, an attempt charged once)."""
        runtime = self.runtime(settings)
        self.register_tasks(runtime)
        port = env_int(f"VIGIL_{self.name.upper()}_BEAT_HEALTH_PORT", default_port(self.name, "beat"))
        serve_health(settings.bind_host, port, f"{self.name}-beat", runtime.ready_checks())
        schedule = Path(env("VIGIL_VAR_DIR", "./var")) / f"{self.name}-beat-schedule"
        runtime.celery.Beat(schedule=str(schedule), loglevel=settings.log_level).run()

    def _run_relay(self, settings: Settings) -> None:
        runtime = self.runtime(settings)
        relay = runtime.relay()
        checks = runtime.ready_checks() | {"relay_loop": lambda: _relay_alive(relay)}
        serve_health(settings.bind_host, settings.relay_health_port, f"{self.name}-relay", checks)
        relay.run_forever()


def _relay_alive(relay: OutboxRelay) -> None:
    if relay.last_cycle_ok is None or time.monotonic() - relay.last_cycle_ok > 30:
        raise RuntimeError("relay has not completed a cycle in 30 s")


def rotate_keys(runtime: ServiceRuntime, columns: list[Any], batch_size: int = 500) -> int:
    """Re-encrypts every value of ``columns`` not yet under the primary key, in short transactions."""
    from sqlalchemy import select

    cipher, rotated = runtime.cipher, 0
    for column in columns:
        model = column.class_
        primary_key = model.__mapper__.primary_key[0]
        last = None
        while True:
            with runtime.db.transaction() as session:
                statement = select(model).where(column.isnot(None)).order_by(primary_key).limit(batch_size)
                if last is not None:
                    statement = statement.where(primary_key > last)
                rows = session.scalars(statement).all()
                for row in rows:
                    token = getattr(row, column.key)
                    if not cipher.is_current(token):
                        setattr(row, column.key, cipher.rotate(token))
                        rotated += 1
                if not rows:
                    break
                last = getattr(rows[-1], primary_key.key)
    return rotated
