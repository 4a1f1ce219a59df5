from vigil_billing.models import Base
from vigil_shared.migrations import run_migrations

run_migrations(Base.metadata)
