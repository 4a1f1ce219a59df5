from vigil_customer.models import Base
from vigil_shared.testing import assert_migrations_round_trip


def test_migrations_match_the_models_and_go_down_and_up_again(test_databases):
    assert_migrations_round_trip("vigil_customer", Base.metadata, test_databases.url_for("customer_migrations"))
