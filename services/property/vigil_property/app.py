"""App factory and command line of the property service (``vigil-property migrate|web|worker|relay|rotate-keys``)."""

from __future__ import annotations

from vigil_shared.runtime import ServiceProgram

from .api import BLUEPRINTS
from .models import Property, System, messaging
from .tasks import register_tasks

program = ServiceProgram(
    name="property",
    messaging=messaging,
    blueprints=BLUEPRINTS,
    register_tasks=register_tasks,
    encrypted_columns=[Property.pin_encrypted, System.password_encrypted],
)
create_app = program.create_app


def main(argv: list[str] | None = None) -> int:
    return program.main(argv)
