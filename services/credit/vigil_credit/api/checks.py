"""Credit checks on the customer's Credit tab, their pulls, apply and skip, and the company settings."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import answers, etag_headers, paginate
from vigil_shared.idempotency import idempotent
from vigil_shared.web import (
    current_runtime,
    if_match,
    loaded,
    record_rule,
    request_context,
    request_session,
    requires,
)

from .. import checks, commands, prechecks
from ..models import CreditCheck
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


def customer_rule(permission: str):
    return record_rule(lambda customer_id, **_: commands.load_customer(request_context(), customer_id, permission))


def check_rule(permission: str):
    return record_rule(lambda check_id, **_: commands.load_check(request_context(), check_id, permission))


def present(check: CreditCheck) -> dict:
    return {
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


def _has_previous_address(check: CreditCheck) -> bool:
    return bool(checks.request_view(check, current_runtime().cipher).get("previous_address"))


def answer(check: CreditCheck, status: int = 200, **headers):
    return present(check), status, etag_headers(check, **headers)


def created(check: CreditCheck, status: int):
    """A new check's answer (202 while a pull runs), with its ``Location`` to poll."""
    return answer(check, status, Location=url_for("credit.CreditCheckItem", check_id=check.id))


@blp.route("/customers/<int:customer_id>/credit-checks")
class CustomerCreditChecks(MethodView):
    @requires("credit.view")
    @customer_rule("credit.view")
    @blp.arguments(CreditCheckListArgs, location="query", as_kwargs=True)
    @blp.response(200, CreditCheckPageSchema)
    def get(self, customer_id, page, per_page):
        """The customer's Credit tab: every check, newest first (pending, complete, no hit, frozen, failed, manual)."""
        return paginate(request_session(), checks.checks_of(customer_id), page, per_page).answer(present)

    @requires("credit.create")
    @customer_rule("credit.create")
    @idempotent
    @blp.arguments(CreditCheckCreateSchema)
    @answers(
        blp,
        202,
        CreditCheckSchema,
        conflict="The same bureau was pulled within the company's repeat days: send `confirm_repeat: true`",
        unavailable="The customer service could not be asked about the customer",
    )
    def post(self, data, customer_id):
        """Pull the customer's credit from a bureau: answered at once with the pending check.

        The pull runs in the background; poll the check at its `Location` until its `status` is no
        longer `pending` or `running`. Each pull is a hard inquiry: a repeat of the same bureau within
        the company's repeat days is refused (409) unless `confirm_repeat` is true.
        """
        return created(commands.request_check(request_context(), loaded(), data), 202)


@blp.route("/customers/<int:customer_id>/credit-checks/manual")
class ManualScore(MethodView):
    @requires("credit.create")
    @customer_rule("credit.create")
    @idempotent
    @blp.arguments(ManualScoreSchema)
    @blp.response(201, CreditCheckSchema)
    def post(self, data, customer_id):
        """Enter a score by hand; its letter grade comes from the company's grade bands. Apply it like a pull."""
        return created(commands.enter_manual_score(request_context(), loaded(), data), 201)


@blp.route("/credit-checks/<int:check_id>")
class CreditCheckItem(MethodView):
    @requires("credit.view")
    @check_rule("credit.view")
    @blp.response(200, CreditCheckSchema)
    def get(self, check_id):
        """One credit check: what to poll after a pull (`pending`, `running`, then its outcome)."""
        check, _customer = loaded()
        return answer(check)


@blp.route("/credit-checks/<int:check_id>/apply")
class ApplyCheck(MethodView):
    @requires("credit.apply")
    @check_rule("credit.apply")
    @answers(
        blp, 200, CreditCheckSchema, conflict="The check has no score to apply (still running, no hit, frozen, failed)"
    )
    def post(self, check_id):
        """Make this check the customer's active one: the customer's beacon score and credit tracking
        number are set from it (and recorded in the customer's history) moments later."""
        check, customer = loaded()
        return answer(commands.apply_check(request_context(), check, customer))


@blp.route("/credit-checks/<int:check_id>/skip")
class SkipCheck(MethodView):
    @requires("credit.apply")
    @check_rule("credit.apply")
    @answers(blp, 200, CreditCheckSchema, conflict="The check is still running, or is the applied one")
    def post(self, check_id):
        """Leave the check on the Credit tab without applying it; it can be applied later."""
        check, customer = loaded()
        return answer(commands.skip_check(request_context(), check, customer))


@blp.route("/credit-settings")
class CreditSettingsItem(MethodView):
    @requires("credit.view")
    @blp.response(200, CreditSettingsSchema)
    def get(self):
        """The company's credit settings: repeat-pull days and the letter grade bands."""
        settings = commands.read_settings(request_context())
        return settings, 200, etag_headers(settings)

    @requires("catalogs.manage")
    @blp.arguments(CreditSettingsPatchSchema)
    @answers(blp, 200, CreditSettingsSchema, stale=True)
    def patch(self, changes):
        """Change the repeat-pull days or the grade bands (`catalogs.manage`)."""
        settings = commands.update_settings(request_context(version=if_match()), changes)
        return settings, 200, etag_headers(settings)


@blp.route("/customers/<int:customer_id>/precheck")
class CustomerPreCheck(MethodView):
    @requires("credit.view")
    @customer_rule("credit.view")
    @blp.response(200, PreCheckStatusSchema)
    def get(self, customer_id):
        """The customer's ADT PreCheck: the latest result (`pending`, `running`, `approved`, `declined`
        with reasons, `manual_review`, `error` with its reason) and every earlier one, newest first."""
        items = [prechecks.present(p) for p in prechecks.history(request_session(), customer_id)]
        return {"latest": items[0] if items else None, "history": items}

    @requires("credit.create")
    @customer_rule("credit.create")
    @idempotent
    @blp.response(202, PreCheckSchema)
    def post(self, customer_id):
        """Refresh the ADT PreCheck: a new one runs in the background; poll `GET` for its result."""
        precheck = commands.refresh_precheck(request_context(), loaded())
        return (
            prechecks.present(precheck),
            202,
            {"Location": url_for("credit.CustomerPreCheck", customer_id=customer_id)},
        )
