"""Credit checks on the customer's Credit tab, their pulls, apply and skip, and the company settings."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.customer_replica import CUSTOMER_SERVICE_DOWN
from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers, paginate
from vigil_shared.web import (
    current_identity,
    current_runtime,
    if_match,
    loaded,
    loader_rule,
    request_context,
    request_session,
)

from .. import checks, commands, prechecks
from ..checks import CustomerRef
from ..models import FINISHED, CreditCheck
from ..schemas import (
    CreditCheckCreateSchema,
    CreditCheckListArgs,
    CreditCheckPageSchema,
    CreditCheckSchema,
    CreditSettingsPatchSchema,
    CreditSettingsSchema,
    ManualScoreSchema,
    PreCheckSchema,
    PreCheckStatusSchema,
)

blp = Blueprint("credit", __name__, url_prefix="/api/v1", description="Credit checks and the ADT PreCheck")


# ``loaded()`` is the URL's customer (or check): 404 when unknown or outside the caller's rights.
customer_rule = loader_rule(commands.load_customer, "customer_id", request_context)
check_rule = loader_rule(commands.load_check, "check_id", request_context)


# A check's result: shown only to callers holding ``credit.view`` at the customer's location. Applying
# or skipping a check (``credit.apply``), pulling one or entering a score (``credit.create``) answers it
# to others with these left empty, and its status once it is an outcome (no hit, frozen, failed…): those
# rights act on a check, they do not read it.
RESULT = ("score", "grade", "transaction_id", "reason")
VIEW = "credit.view"


def present(check: CreditCheck, shows_result: bool = True) -> dict:
    shown = {
        column: getattr(check, column)
        for column in (
            "id",
            "customer_id",
            "bureau",
            "status",
            "score",
            "grade",
            "transaction_id",
            "reason",
            "attempts",
            "applied",
            "applied_at",
            "applied_by",
            "requested_by_name",
            "created_at",
            "run_at",
        )
    } | {"skipped": check.skipped_at is not None, "has_previous_address": _has_previous_address(check)}
    if shows_result:
        return shown
    return shown | dict.fromkeys(RESULT) | ({"status": None} if check.status in FINISHED else {})


def _has_previous_address(check: CreditCheck) -> bool:
    return bool(checks.request_view(check, current_runtime().cipher).get("previous_address"))


def answer(check: CreditCheck, customer: CustomerRef | None = None, status: int = 200, **headers):
    """The check as the caller may read it: its result only with ``credit.view`` at ``customer``'s location
    (None: the caller read it with that right)."""
    shows = customer is None or current_identity().can(VIEW, customer.location_id)
    return present(check, shows), status, etag_headers(check, **headers)


def created(check: CreditCheck, customer: CustomerRef, status: int):
    """A new check's answer (202 while a pull runs), with its ``Location`` to poll."""
    return answer(check, customer, status, Location=url_for("credit.CreditCheckItem", check_id=check.id))


REPEAT_PULL = "The same bureau was pulled within the company's repeat days: send `confirm_repeat: true`"
CHECK_REFUSED = {409: REPEAT_PULL, 503: CUSTOMER_SERVICE_DOWN}


@blp.route("/customers/<int:customer_id>/credit-checks")
class CustomerCreditChecks(MethodView):
    @blp.read("credit.view", CreditCheckPageSchema, rule=customer_rule, query=CreditCheckListArgs)
    def get(self, customer_id, page, per_page):
        """The customer's Credit tab: every check, newest first (pending, complete, no hit, frozen, failed, manual)."""
        return paginate(request_session(), checks.checks_of(customer_id), page, per_page).answer(present)

    @blp.start(
        "credit.create", CreditCheckSchema, rule=customer_rule, body=CreditCheckCreateSchema, answers=CHECK_REFUSED
    )
    def post(self, data, customer_id):
        """Pull the customer's credit from a bureau: answered at once with the pending check.

        The pull runs in the background; poll the check at its `Location` until its `status` is no
        longer `pending` or `running`. Each pull is a hard inquiry: a repeat of the same bureau within
        the company's repeat days is refused (409) unless `confirm_repeat` is true.
        """
        customer = loaded()
        return created(commands.request_check(request_context(), customer, data), customer, 202)


@blp.route("/customers/<int:customer_id>/credit-checks/manual")
class ManualScore(MethodView):
    @blp.create("credit.create", CreditCheckSchema, rule=customer_rule, body=ManualScoreSchema)
    def post(self, data, customer_id):
        """Enter a score by hand; its letter grade comes from the company's grade bands. Apply it like a pull.
        The answer shows the score and grade only with `credit.view`."""
        customer = loaded()
        return created(commands.enter_manual_score(request_context(), customer, data), customer, 201)


@blp.route("/credit-checks/<int:check_id>")
class CreditCheckItem(MethodView):
    @blp.read("credit.view", CreditCheckSchema, rule=check_rule)
    def get(self, check_id):
        """One credit check: what to poll after a pull (`pending`, `running`, then its outcome)."""
        check, _customer = loaded()
        return answer(check)


NO_SCORE = "The check has no score to apply (still running, no hit, frozen, failed)"


@blp.route("/credit-checks/<int:check_id>/apply")
class ApplyCheck(MethodView):
    @blp.operation("credit.apply", CreditCheckSchema, rule=check_rule, conflict=NO_SCORE)
    def post(self, check_id):
        """Make this check the customer's active one: the customer's beacon score and credit tracking
        number are set from it (and recorded in the customer's history) moments later. The answer shows
        the check's result (score, grade, transaction id, reason, outcome) only with `credit.view`."""
        check, customer = loaded()
        return answer(commands.apply_check(request_context(), check, customer), customer)


@blp.route("/credit-checks/<int:check_id>/skip")
class SkipCheck(MethodView):
    @blp.operation(
        "credit.apply", CreditCheckSchema, rule=check_rule, conflict="The check is still running, or is the applied one"
    )
    def post(self, check_id):
        """Leave the check on the Credit tab without applying it; it can be applied later. The answer
        shows the check's result only with `credit.view`."""
        check, customer = loaded()
        return answer(commands.skip_check(request_context(), check, customer), customer)


@blp.route("/credit-settings")
class CreditSettingsItem(MethodView):
    @blp.read("credit.view", CreditSettingsSchema)
    def get(self):
        """The company's credit settings: repeat-pull days and the letter grade bands."""
        settings = commands.read_settings(request_context())
        return settings, 200, etag_headers(settings)

    @blp.change("catalogs.manage", CreditSettingsSchema, body=CreditSettingsPatchSchema)
    def patch(self, changes):
        """Change the repeat-pull days or the grade bands (`catalogs.manage`)."""
        settings = commands.update_settings(request_context(version=if_match()), changes)
        return settings, 200, etag_headers(settings)


@blp.route("/customers/<int:customer_id>/precheck")
class CustomerPreCheck(MethodView):
    @blp.read("credit.view", PreCheckStatusSchema, rule=customer_rule)
    def get(self, customer_id):
        """The customer's ADT PreCheck: the latest result (`pending`, `running`, `approved`, `declined`
        with reasons, `manual_review`, `error` with its reason) and every earlier one, newest first."""
        items = [prechecks.present(p) for p in prechecks.history(request_session(), customer_id)]
        return {"latest": items[0] if items else None, "history": items}

    @blp.start("credit.create", PreCheckSchema, rule=customer_rule)
    def post(self, customer_id):
        """Refresh the ADT PreCheck: a new one runs in the background; poll `GET` for its result."""
        precheck = commands.refresh_precheck(request_context(), loaded())
        return (
            prechecks.present(precheck),
            202,
            {"Location": url_for("credit.CustomerPreCheck", customer_id=customer_id)},
        )
