"""App factory and command line of the customer service (``vigil-customer migrate|web|worker|relay``)."""
from __future__ import annotations

from vigil_shared.runtime import ServiceProgram

from .api import BLUEPRINTS
from .models import messaging
from .tasks import register_tasks

program = ServiceProgram(name="customer", package="vigil_customer", messaging=messaging,
                         blueprints=BLUEPRINTS, register_tasks=register_tasks)
create_app = program.create_app


def main(argv: list[str] | None = None) -> int:
    return program.main(argv)
