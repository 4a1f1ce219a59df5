"""The company's billing settings and a customer's billing account (balance, parent, currency)."""

from __future__ import annotations

from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers

from .. import accounts, commands
from ..schemas import AccountSchema, SettingsPatchSchema, SettingsSchema
from .common import context, customer_rule, if_match, loaded

blp = Blueprint("billing_accounts", __name__, url_prefix="/api/v1", description="Billing settings and accounts")


CURRENCY_FIXED = "The currency cannot change once amounts are stored in it"


@blp.route("/billing/settings")
class Settings(MethodView):
    @blp.read("billing.view", SettingsSchema)
    def get(self):
        """The company's billing configuration: currency, default tax rate, terms, MMR items and mode."""
        settings = commands.read_settings(context())
        return settings, 200, etag_headers(settings)

    @blp.change("catalogs.manage", SettingsSchema, body=SettingsPatchSchema, conflict=CURRENCY_FIXED)
    def patch(self, changes):
        """Change the configuration. Changing the MMR items flags the rates whose breakdown no longer matches."""
        settings = commands.update_settings(context(if_match()), changes)
        return settings, 200, etag_headers(settings)


@blp.route("/customers/<int:customer_id>/billing")
class Account(MethodView):
    @blp.read("billing.view", AccountSchema, rule=customer_rule)
    def get(self, customer_id):
        """The customer's billing account: balance and past due in minor units, currency, parent."""
        known = loaded()
        balance, past_due, open_count = commands.balances(context(), known.customer_id)
        return accounts.account_body(
            known, commands.read_settings(context()), balance=balance, past_due=past_due, open_invoices=open_count
        )
