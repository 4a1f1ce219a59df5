from vigil_credit.models import Base
from vigil_credit.tasks import register_tasks
from vigil_shared.messaging.contracts import handle_event_task
from vigil_shared.testing import assert_migrations_round_trip


def test_healthz_answers_without_identity(api):
    response = api.as_(None).get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"

def test_readyz_reports_database_and_broker(api):
    response = api.as_(None).get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": {"status": "ok"}, "broker": {"status": "ok"}}

def test_api_paths_need_a_gateway_identity(api):
    anonymous = api.as_(None)
    for response in (anonymous.get("/api/v1/anything"), anonymous.post("/api/v1/anything/1", json={})):
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json["status"] == 401 and response.headers["X-Request-ID"]
    assert api.get("/api/v1/anything").status_code == 404

def test_worker_consumes_its_own_queue(runtime):
    register_tasks(runtime)
    assert handle_event_task("credit") in runtime.celery.tasks

def test_migrations_match_the_models_and_go_down_and_up_again(test_databases):
    assert_migrations_round_trip("vigil_credit", Base.metadata, test_databases.url_for("credit_migrations"))
