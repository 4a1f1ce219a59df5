"""App factory and command line of the credit service (``vigil-credit migrate|web|worker|relay``)."""

from __future__ import annotations

from vigil_shared.config import env_int
from vigil_shared.runtime import ServiceProgram

from .api import BLUEPRINTS
from .models import messaging
from .tasks import register_tasks

program = ServiceProgram(
    name="credit",
    messaging=messaging,
    blueprints=BLUEPRINTS,
    register_tasks=register_tasks,
    # pulls and PreChecks wait on the bureau and ADT: threads, so one worker holds many calls at once
    worker_threads=lambda: env_int("VIGIL_CREDIT_WORKER_THREADS", 12),
)
create_app = program.create_app


def main(argv: list[str] | None = None) -> int:
    return program.main(argv)
