from vigil_shared.migrations import run_migrations

from vigil_billing.models import Base

run_migrations(Base.metadata)
