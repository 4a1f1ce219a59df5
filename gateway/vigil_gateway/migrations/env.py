from vigil_gateway.models import Base
from vigil_shared.migrations import run_migrations

run_migrations(Base.metadata)
