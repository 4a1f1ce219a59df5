"""App factory and command line of the billing service (``vigil-billing migrate|web|worker|relay|beat``)."""

from __future__ import annotations

import sys
from pathlib import Path

from vigil_shared.config import Settings, env, env_int
from vigil_shared.logs import configure_logging
from vigil_shared.runtime import ServiceProgram, serve_health

from .api import BLUEPRINTS
from .models import messaging
from .tasks import register_tasks

program = ServiceProgram(
    name="billing", package="vigil_billing", messaging=messaging, blueprints=BLUEPRINTS, register_tasks=register_tasks
)
create_app = program.create_app


def run_beat() -> int:
    """``vigil-billing beat``: the Celery beat sending ``billing.run_due.v1`` every minute to billing's queue.

    A second beat, or one firing twice, is harmless: the job issues a period once (unique period key)
    and charges an attempt once (processor idempotency key)."""
    settings = Settings.from_env("billing")
    configure_logging(settings.log_level, process="billing-beat")
    runtime = program.runtime(settings)
    register_tasks(runtime)
    serve_health(
        settings.bind_host, env_int("VIGIL_BILLING_BEAT_HEALTH_PORT", 8303), "billing-beat", runtime.ready_checks()
    )
    schedule = Path(env("VIGIL_VAR_DIR", "./var")) / "billing-beat-schedule"
    runtime.celery.Beat(schedule=str(schedule), loglevel=settings.log_level).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["beat"]:
        return run_beat()
    return program.main(argv)
