from vigil_property.models import Base
from vigil_shared.migrations import run_migrations

run_migrations(Base.metadata)
