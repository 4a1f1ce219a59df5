from vigil_gateway.models import Base
from vigil_shared.testing import TestDatabases, assert_migrations_round_trip, choose_backend


def test_migrations_match_the_models_and_go_down_and_up_again(tmp_path):
    databases = TestDatabases(choose_backend(), str(tmp_path))
    try:
        assert_migrations_round_trip("vigil_gateway", Base.metadata, databases.url_for("gateway_migrations"))
    finally:
        databases.drop_all()
