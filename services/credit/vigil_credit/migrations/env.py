from vigil_shared.migrations import run_migrations

from vigil_credit.models import Base

run_migrations(Base.metadata)
