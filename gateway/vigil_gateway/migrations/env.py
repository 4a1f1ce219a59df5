from vigil_shared.migrations import run_migrations

from vigil_gateway.models import Base

run_migrations(Base.metadata)
