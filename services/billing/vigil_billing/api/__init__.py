"""HTTP views of the billing service: thin, they parse, call one command (``commands``), render."""

from .accounts import blp as accounts_blp
from .archive import blp as archive_blp
from .invoices import blp as invoices_blp
from .ledger import blp as ledger_blp
from .methods import blp as methods_blp
from .payments import blp as payments_blp
from .rates import blp as rates_blp
from .recurring import blp as recurring_blp

BLUEPRINTS = [accounts_blp, rates_blp, invoices_blp, methods_blp, payments_blp, recurring_blp, ledger_blp, archive_blp]
