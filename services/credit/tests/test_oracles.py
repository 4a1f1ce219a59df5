"""A check's result (score, grade, transaction id, the bureau's reason, its outcome) is for callers
holding ``credit.view`` at the customer's location: applying or skipping it, or entering a score, with
the other credit rights only, answers without it (nobody gains what they do not hold)."""

from test_credit_checks import URL, FakeBureau, pull

from vigil_credit.bureau import BureauAnswer
from vigil_shared.testing import identity_with

RESULT = ("score", "grade", "transaction_id", "reason")


def test_skipping_or_applying_a_check_shows_its_result_only_to_a_credit_viewer(api, runtime, customers):
    check_id = api.post(URL, json={"bureau": "equifax"}).json["id"]
    pull(runtime, customers, check_id, FakeBureau())
    applier = api.as_(identity_with("credit.apply"))
    skipped = applier.post(f"/api/v1/credit-checks/{check_id}/skip")
    assert skipped.status_code == 200 and skipped.json["skipped"] is True, skipped.json
    assert all(skipped.json[name] is None for name in (*RESULT, "status")), skipped.json
    assert "712" not in skipped.get_data(as_text=True) and "EQ-1" not in skipped.get_data(as_text=True)
    applied = applier.post(f"/api/v1/credit-checks/{check_id}/apply")
    assert applied.status_code == 200 and applied.json["applied"] is True
    assert all(applied.json[name] is None for name in RESULT), applied.json
    viewer = api.as_(identity_with("credit.apply", "credit.view"))
    again = viewer.post(f"/api/v1/credit-checks/{check_id}/apply").json
    assert (again["score"], again["grade"], again["transaction_id"]) == (712, "A", "EQ-1")


def test_a_refused_apply_names_no_outcome_to_a_caller_who_may_not_see_it(api, runtime, customers):
    answers = {}
    for outcome in ("no_hit", "frozen"):
        check_id = api.post(URL, json={"bureau": "equifax", "confirm_repeat": True}).json["id"]
        pull(runtime, customers, check_id, FakeBureau(BureauAnswer(outcome, "T", reason="Consumer file frozen")))
        refused = api.as_(identity_with("credit.apply")).post(f"/api/v1/credit-checks/{check_id}/apply")
        assert refused.status_code == 409
        answers[outcome] = {key: value for key, value in refused.json.items() if key not in ("instance", "request_id")}
    assert answers["no_hit"] == answers["frozen"], answers
    assert "frozen" not in str(answers["frozen"]) and "no_hit" not in str(answers["no_hit"])
    seen = api.as_(identity_with("credit.apply", "credit.view")).post(f"/api/v1/credit-checks/{check_id}/apply")
    assert seen.status_code == 409 and seen.json["errors"] == {"status": ["frozen"]}


def test_a_manual_score_answers_its_grade_only_to_a_credit_viewer(api, customers):
    """The grade comes from the company's bands, which only credit viewers may read."""
    blind = api.as_(identity_with("credit.create")).post(f"{URL}/manual", json={"score": 640})
    assert blind.status_code == 201 and all(blind.json[name] is None for name in RESULT), blind.json
    seen = api.as_(identity_with("credit.create", "credit.view")).post(f"{URL}/manual", json={"score": 640})
    assert seen.status_code == 201 and (seen.json["score"], seen.json["grade"]) == (640, "C")


def test_a_repeat_pull_names_the_earlier_check_only_to_a_credit_viewer(api, customers):
    """The refusal must warn of a second hard inquiry; which check it was, and when, is the Credit tab's."""
    earlier = api.post(URL, json={"bureau": "equifax"}).json
    runner = api.as_(identity_with("credit.create")).post(URL, json={"bureau": "equifax"})
    assert runner.status_code == 409 and runner.json["errors"] == {"confirm_repeat": ["Confirm the repeat pull."]}
    assert "previous_check_id" not in runner.json and str(earlier["id"]) not in runner.json["detail"]
    assert earlier["created_at"][:10] not in runner.json["detail"]
    viewer = api.as_(identity_with("credit.create", "credit.view")).post(URL, json={"bureau": "equifax"})
    assert viewer.status_code == 409 and viewer.json["previous_check_id"] == earlier["id"]
