"""App factory and command line of the customer service (``vigil-customer migrate|web|worker|relay|rotate-keys``)."""

from __future__ import annotations

from vigil_shared.config import var_dir
from vigil_shared.operations import operations_blueprint
from vigil_shared.runtime import ServiceProgram, ServiceRuntime

from .api import BLUEPRINTS, MULTIPART_ENDPOINTS
from .archiving import operation_links, readable_steps
from .models import Contact, Customer, HistoryEntry, messaging, operations
from .record import ENCRYPTED
from .storage import LocalFileStore
from .tasks import register_tasks


def reseal_files(runtime: ServiceRuntime) -> int:
    """``rotate-keys``: the stored files' bytes, re-encrypted under the first key too."""
    return LocalFileStore(var_dir() / "customer-files", runtime.cipher).reseal()


program = ServiceProgram(
    name="customer",
    messaging=messaging,
    blueprints=[*BLUEPRINTS, operations_blueprint(operations, operation_links, readable_steps)],
    register_tasks=register_tasks,
    multipart_endpoints=MULTIPART_ENDPOINTS,
    # every column holding FieldCipher tokens, re-encrypted by `vigil-customer rotate-keys`
    # (the record's confidential fields come from the registry)
    encrypted_columns=[
        *(getattr(Customer, column) for column in ENCRYPTED.values()),
        Contact.passcode_enc,
        HistoryEntry.old_value_enc,
        HistoryEntry.new_value_enc,
    ],
    rotate_more=reseal_files,
)
create_app = program.create_app


def main(argv: list[str] | None = None) -> int:
    return program.main(argv)
