"""account numbers are one account whatever the letter case and surrounding spaces

``acc-1`` and ``ACC-1`` were two accounts. Each property now keeps the number as typed (trimmed) and
its key (trimmed, upper case), which is unique. Existing numbers that would become one account are
not merged or renamed behind anyone's back: the upgrade stops before changing anything and names
them, so an operator can renumber them (``PATCH /properties/{id}``) and run it again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def _key(account_number: str) -> str:
    # as ``vigil_property.account_numbers.account_key`` was when this was written
    return account_number.strip().upper()


class AccountNumbersCollide(RuntimeError):
    pass


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, account_number FROM properties WHERE account_number IS NOT NULL ORDER BY id")
    ).all()
    by_key: dict[str, list] = {}
    for property_id, number in rows:
        by_key.setdefault(_key(number), []).append((property_id, number))
    collisions = {key: found for key, found in by_key.items() if len(found) > 1}
    if collisions:
        listed = "; ".join(
            ", ".join(f"property {pid} {number!r}" for pid, number in found) for found in collisions.values()
        )
        raise AccountNumbersCollide(
            f"{len(collisions)} account number(s) differ only in letter case or spaces and would become one "
            f"account: {listed}. Renumber all but one of each and run the upgrade again; nothing was changed."
        )
    with op.batch_alter_table("properties") as batch:
        batch.add_column(sa.Column("account_key", sa.String(80), nullable=True))
    properties = sa.table(
        "properties",
        sa.column("id", sa.Integer()),
        sa.column("account_number", sa.String()),
        sa.column("account_key", sa.String()),
    )
    for property_id, number in rows:
        bind.execute(
            properties.update()
            .where(properties.c.id == property_id)
            .values(account_number=number.strip(), account_key=_key(number))
        )
    with op.batch_alter_table("properties") as batch:
        batch.drop_constraint("uq_properties_account_number", type_="unique")
        batch.create_unique_constraint("uq_properties_account_key", ["account_key"])
        batch.create_index("ix_properties_account_number", ["account_number"])


def downgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        batch.drop_index("ix_properties_account_number")
        batch.drop_constraint("uq_properties_account_key", type_="unique")
        batch.drop_column("account_key")
        batch.create_unique_constraint("uq_properties_account_number", ["account_number"])
