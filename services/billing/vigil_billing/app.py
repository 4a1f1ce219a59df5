"""App factory and command line of the billing service (``vigil-billing migrate|web|worker|relay|beat``)."""

from __future__ import annotations

from vigil_shared.runtime import ServiceProgram

from .api import BLUEPRINTS
from .models import messaging
from .tasks import register_tasks

program = ServiceProgram(
    name="billing",
    messaging=messaging,
    blueprints=BLUEPRINTS,
    register_tasks=register_tasks,
    beat=True,  # recurring invoices and scheduled payments fall due
)
create_app = program.create_app


def main(argv: list[str] | None = None) -> int:
    return program.main(argv)
