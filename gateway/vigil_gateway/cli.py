"""The gateway's command line: ``vigil-gateway migrate|create-admin|web|worker|deliver``.

Like a service's (``vigil_shared.runtime.ServiceProgram.main``): settings from the environment, a
refused setting is a one-line error and exit status 2, one log configuration per command.
"""

from __future__ import annotations

import argparse
import sys

from vigil_shared.config import ConfigError, env
from vigil_shared.logs import configure_logging

from .settings import GatewaySettings

# Each command imports what it runs, no more: ``deliver`` (beside every worker) loads no web framework, no
# Celery and no password hasher (issue 10: idle memory; gateway/tests/test_cli.py keeps them out).


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil-gateway", description="Vigil gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    admin = commands.add_parser("create-admin", help="create the first admin (VIGIL_ADMIN_USERNAME/PASSWORD)")
    admin.add_argument("--reset", action="store_true", help="set a new password on an existing admin")
    commands.add_parser("web", help="serve the public API with gunicorn")
    commands.add_parser("worker", help="keep the change feed and deliver webhooks (the gateway's Celery queue)")
    commands.add_parser("deliver", help="send the webhook deliveries (started by the worker, beside it)")
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings.from_env()
    except ConfigError as exc:
        print(f"vigil-gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.base.log_level, process=f"gateway-{args.command}")
    if args.command == "migrate":
        from vigil_shared import migrations  # alembic only where it is used: the web process stays smaller

        migrations.upgrade("vigil_gateway", settings.base.database_url)
    elif args.command == "create-admin":
        _create_admin(settings, reset=args.reset)
    elif args.command == "web":
        from vigil_shared.runtime import run_gunicorn

        from .app import create_app  # the worker never imports the API's views and schemas

        run_gunicorn(lambda: create_app(settings), settings.base)
    elif args.command == "worker":
        return _run_worker(settings)
    elif args.command == "deliver":
        return _run_deliverer(settings)
    return 0


def _run_worker(settings: GatewaySettings) -> int:
    """The Celery worker of the gateway's queue on a thread pool, its health port and the retry sweep."""
    import threading

    from vigil_shared.config import env_int
    from vigil_shared.messaging.celery_app import ping_broker, run_worker
    from vigil_shared.runtime import serve_health

    from .worker import WebhookRuntime

    runtime = WebhookRuntime.build(settings)
    runtime.register_tasks()
    base = settings.base
    checks = {"database": runtime.db.ping, "broker": lambda: ping_broker(base)}
    stopping = threading.Event()
    if env_int("VIGIL_WEBHOOK_DELIVERY_PROCESS", 1):  # the deliveries on the other core
        runtime.elsewhere = True
        checks["delivery process"] = DeliveryProcess(stopping).check
    else:  # deliveries on their own threads, never waiting behind the event intake on the Celery pool's
        runtime.start_delivery(env_int("VIGIL_WEBHOOK_DELIVERY_THREADS", 2))
    serve_health(base.bind_host, env_int("VIGIL_GATEWAY_WORKER_HEALTH_PORT", 8100), "gateway-worker", checks)
    threading.Thread(target=runtime.run_sweeper, args=(stopping,), name="webhook-sweep", daemon=True).start()
    try:
        assert runtime.celery is not None, "built with its broker"
        return run_worker(
            runtime.celery,
            name="gateway",
            queue=base.queue_name(),
            concurrency=runtime.hooks.concurrency,
            loglevel=base.log_level,
            pool="threads",
        )
    finally:
        stopping.set()


class DeliveryProcess:
    """``vigil-gateway deliver``, the worker's child: started again if it ends, ended with the worker
    (its parent-death signal, also after a kill -9 of the worker)."""

    def __init__(self, stopping) -> None:
        import subprocess
        import threading

        self.stopping = stopping
        self.argv = [sys.argv[0], "deliver"]
        self.popen = subprocess.Popen(self.argv, preexec_fn=_die_with_parent)  # noqa: S603 - our own program
        threading.Thread(target=self._watch, name="delivery-process", daemon=True).start()

    def _watch(self) -> None:
        import logging
        import subprocess

        while not self.stopping.is_set():
            code = self.popen.wait()
            if self.stopping.is_set():
                return
            logging.getLogger("vigil.webhooks").error(
                "the delivery process ended; starting it again", extra={"code": code}
            )
            self.stopping.wait(1.0)
            self.popen = subprocess.Popen(self.argv, preexec_fn=_die_with_parent)  # noqa: S603

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError("the delivery process is not running")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the worker ends, however it ends (Linux ``prctl``)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the runner's process group still ends it
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _run_deliverer(settings: GatewaySettings) -> int:
    """The webhook delivery pool in its own process: takes the due deliveries from the rows."""
    import signal
    import threading

    from vigil_shared.config import env_float, env_int

    from .worker import WebhookRuntime

    runtime = WebhookRuntime.build(settings, broker=False)  # it takes its work from the rows
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    runtime.run_delivery_process(
        stopping, env_int("VIGIL_WEBHOOK_DELIVERY_THREADS", 2), env_float("VIGIL_WEBHOOK_POLL_INTERVAL", 0.05)
    )
    return 0


def _create_admin(settings: GatewaySettings, reset: bool) -> None:
    from vigil_shared.db import Database

    from .passwords import Passwords
    from .users import ensure_admin

    db = Database(settings.base.database_url)
    try:
        with db.transaction() as session:
            setup = ensure_admin(
                session,
                Passwords(settings.password_hashing),
                env("VIGIL_ADMIN_USERNAME", "admin"),
                env("VIGIL_ADMIN_PASSWORD"),
                reset=reset,
            )
    finally:
        db.dispose()
    if setup.password and not env("VIGIL_ADMIN_PASSWORD"):
        print(f"Admin user '{setup.username}' password (shown once): {setup.password}")
    elif setup.created or setup.password:
        print(f"Admin user '{setup.username}' {'created' if setup.created else 'password reset'}.")
    else:
        print(
            f"Admin user '{setup.username}' already exists; password unchanged "
            "(vigil-gateway create-admin --reset sets a new one)."
        )
