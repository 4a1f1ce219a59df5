"""the full customer record, search terms, history, notes, contacts, tags, files,
custom fields and the property account replica

Existing rows keep their data: ``phone`` moves to ``primary_phone`` (with its E.164 form when it
parses), and the sort key and search terms are computed for them here, with the rules frozen as
they were when this revision was written.
"""

import re
import unicodedata

import phonenumbers
import sqlalchemy as sa
from alembic import op

import vigil_shared.db

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # customers first: on SQLite a batch rebuild drops the old table, which would cascade to children
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=10), server_default="customer", nullable=False))
        batch.add_column(sa.Column("location_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("birthdate_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("language", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("address_line1", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("address_line2", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("city", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("state", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("zip", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("county", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("cross_street", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("primary_phone", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("primary_phone_e164", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("work_phone", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("work_phone_e164", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("cell_phone", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("cell_phone_e164", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("other_phone", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("other_phone_e164", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("best_time_to_contact", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("ssn_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ssn_index", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("spouse", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("credit_score", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("credit_tracking_number", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("account_type", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("account_class", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("business_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("business_contact", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("dba_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("source", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("source_campaign", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("company", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
        batch.add_column(sa.Column("custom_fields", sa.JSON(), server_default="{}", nullable=False))
        batch.add_column(sa.Column("parent_customer_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sale_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("sold_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("trainee_trainer", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("lead_rep", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("call_center_rep", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("adt_number", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("adt_serial_man", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("account_number", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("mmr", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("mmr_a_la_carte", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False))
        batch.add_column(sa.Column("monitoring_plan", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("canceled", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("cancel_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("discount_affiliate", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("discount_affiliate_member_number", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("monitored_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("interactive_services_provider", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("adt_system_type", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("contract_term_months", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("activation_fee", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("warranty_term_months", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("dealer_number", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("collections_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("funding_status", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("funded_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("installation_appointment_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("install_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("install_tech", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("install_tech_reports_to", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("confirmation_number_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("receiver_number_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("abort_code_enc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("installed", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("two_way_voice", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("cellular_backup", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("guard_response", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("maintenance", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("invoicing", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("aarp", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("tellular", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("pulse", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("callback_at", vigil_shared.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("lead_disposition", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("callcenter_comments", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lead_status", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("lead_comments", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "sort_name",
                sa.String(length=220, collation="C").with_variant(sa.String(length=220), "sqlite"),
                server_default="",
                nullable=False,
            )
        )
        batch.add_column(sa.Column("name_address_key", sa.String(length=400), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("converted_at", vigil_shared.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("archived_at", vigil_shared.db.UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column(
                "last_activity_at",
                vigil_shared.db.UTCDateTime(),
                server_default=sa.text("CURRENT_TIMESTAMP"),
                nullable=False,
            )
        )
        batch.create_index("ix_customers_activity", ["last_activity_at", "id"], unique=False)
        batch.create_index(op.f("ix_customers_cell_phone_e164"), ["cell_phone_e164"], unique=False)
        batch.create_index("ix_customers_created", ["created_at", "id"], unique=False)
        batch.create_index(op.f("ix_customers_location_id"), ["location_id"], unique=False)
        batch.create_index(op.f("ix_customers_name_address_key"), ["name_address_key"], unique=False)
        batch.create_index(op.f("ix_customers_other_phone_e164"), ["other_phone_e164"], unique=False)
        batch.create_index(op.f("ix_customers_parent_customer_id"), ["parent_customer_id"], unique=False)
        batch.create_index(op.f("ix_customers_primary_phone_e164"), ["primary_phone_e164"], unique=False)
        batch.create_index("ix_customers_sort", ["sort_name", "id"], unique=False)
        batch.create_index(op.f("ix_customers_ssn_index"), ["ssn_index"], unique=False)
        batch.create_index(op.f("ix_customers_work_phone_e164"), ["work_phone_e164"], unique=False)
        batch.create_foreign_key(
            op.f("fk_customers_parent_customer_id_customers"),
            "customers",
            ["parent_customer_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.execute("UPDATE customers SET primary_phone = phone")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("phone")
    op.create_table(
        "custom_fields",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("applies_to", sa.String(length=10), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_fields")),
        sa.UniqueConstraint("key", name=op.f("uq_custom_fields_key")),
    )
    op.create_table(
        "property_accounts",
        sa.Column("property_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("account_number", sa.String(length=100), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("property_id", name=op.f("pk_property_accounts")),
    )
    op.create_index(op.f("ix_property_accounts_customer_id"), "property_accounts", ["customer_id"], unique=False)
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("name_key", sa.String(length=50), nullable=False),
        sa.Column("color", sa.String(length=7), nullable=True),
        sa.Column("created_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
        sa.UniqueConstraint("name_key", name=op.f("uq_tags_name_key")),
    )
    op.create_table(
        "customer_contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("relation", sa.String(length=100), nullable=True),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.Column("phones", sa.JSON(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("has_key", sa.Boolean(), nullable=False),
        sa.Column("call_priority", sa.Integer(), nullable=True),
        sa.Column("passcode_enc", sa.Text(), nullable=True),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("created_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_contacts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_contacts")),
    )
    op.create_index(
        "ix_customer_contacts_customer", "customer_contacts", ["customer_id", "type", "call_priority"], unique=False
    )
    op.create_table(
        "customer_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("uploaded_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_customer_files_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_files")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_customer_files_storage_key")),
    )
    op.create_index(op.f("ix_customer_files_customer_id"), "customer_files", ["customer_id"], unique=False)
    op.create_table(
        "customer_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=100), nullable=True),
        sa.Column("actor_name", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("target_type", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("field", sa.String(length=100), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("old_value_enc", sa.Text(), nullable=True),
        sa.Column("new_value_enc", sa.Text(), nullable=True),
        sa.Column("confidential", sa.String(length=30), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_history_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_history")),
    )
    op.create_index("ix_customer_history_customer", "customer_history", ["customer_id", "at", "id"], unique=False)
    op.create_table(
        "customer_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("assignee", sa.String(length=100), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("priority", sa.String(length=10), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_customer_notes_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_notes")),
    )
    op.create_index(
        "ix_customer_notes_customer", "customer_notes", ["customer_id", "urgent", "created_at"], unique=False
    )
    op.create_table(
        "customer_search_terms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column(
            "term", sa.String(length=120, collation="C").with_variant(sa.String(length=120), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column(
            "sort_name",
            sa.String(length=220, collation="C").with_variant(sa.String(length=220), "sqlite"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_search_terms_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_search_terms")),
    )
    op.create_index(
        op.f("ix_customer_search_terms_customer_id"), "customer_search_terms", ["customer_id"], unique=False
    )
    op.create_index(
        "ix_customer_search_terms_lookup",
        "customer_search_terms",
        ["term", "location_id", "kind", "sort_name", "customer_id"],
        unique=False,
    )
    op.create_table(
        "customer_tags",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("applied_at", vigil_shared.db.UTCDateTime(), nullable=False),
        sa.Column("applied_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_customer_tags_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["tag_id"], ["tags.id"], name=op.f("fk_customer_tags_tag_id_tags"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", "tag_id", name=op.f("pk_customer_tags")),
    )
    op.create_index(op.f("ix_customer_tags_tag_id"), "customer_tags", ["tag_id"], unique=False)
    _migrate_rows()


def downgrade() -> None:
    op.drop_index(op.f("ix_customer_tags_tag_id"), table_name="customer_tags")
    op.drop_table("customer_tags")
    op.drop_index("ix_customer_search_terms_lookup", table_name="customer_search_terms")
    op.drop_index(op.f("ix_customer_search_terms_customer_id"), table_name="customer_search_terms")
    op.drop_table("customer_search_terms")
    op.drop_index("ix_customer_notes_customer", table_name="customer_notes")
    op.drop_table("customer_notes")
    op.drop_index("ix_customer_history_customer", table_name="customer_history")
    op.drop_table("customer_history")
    op.drop_index(op.f("ix_customer_files_customer_id"), table_name="customer_files")
    op.drop_table("customer_files")
    op.drop_index("ix_customer_contacts_customer", table_name="customer_contacts")
    op.drop_table("customer_contacts")
    op.drop_table("tags")
    op.drop_index(op.f("ix_property_accounts_customer_id"), table_name="property_accounts")
    op.drop_table("property_accounts")
    op.drop_table("custom_fields")
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=40), nullable=True))
    op.execute("UPDATE customers SET phone = primary_phone")
    with op.batch_alter_table("customers") as batch:
        batch.drop_constraint(op.f("fk_customers_parent_customer_id_customers"), type_="foreignkey")
        batch.drop_index(op.f("ix_customers_work_phone_e164"))
        batch.drop_index(op.f("ix_customers_ssn_index"))
        batch.drop_index("ix_customers_sort")
        batch.drop_index(op.f("ix_customers_primary_phone_e164"))
        batch.drop_index(op.f("ix_customers_parent_customer_id"))
        batch.drop_index(op.f("ix_customers_other_phone_e164"))
        batch.drop_index(op.f("ix_customers_name_address_key"))
        batch.drop_index(op.f("ix_customers_location_id"))
        batch.drop_index("ix_customers_created")
        batch.drop_index(op.f("ix_customers_cell_phone_e164"))
        batch.drop_index("ix_customers_activity")
        batch.drop_column("last_activity_at")
        batch.drop_column("archived_at")
        batch.drop_column("converted_at")
        batch.drop_column("created_by")
        batch.drop_column("name_address_key")
        batch.drop_column("sort_name")
        batch.drop_column("lead_comments")
        batch.drop_column("lead_status")
        batch.drop_column("callcenter_comments")
        batch.drop_column("lead_disposition")
        batch.drop_column("callback_at")
        batch.drop_column("pulse")
        batch.drop_column("tellular")
        batch.drop_column("aarp")
        batch.drop_column("invoicing")
        batch.drop_column("maintenance")
        batch.drop_column("guard_response")
        batch.drop_column("cellular_backup")
        batch.drop_column("two_way_voice")
        batch.drop_column("installed")
        batch.drop_column("abort_code_enc")
        batch.drop_column("receiver_number_enc")
        batch.drop_column("confirmation_number_enc")
        batch.drop_column("install_tech_reports_to")
        batch.drop_column("install_tech")
        batch.drop_column("install_date")
        batch.drop_column("installation_appointment_id")
        batch.drop_column("funded_date")
        batch.drop_column("funding_status")
        batch.drop_column("collections_date")
        batch.drop_column("dealer_number")
        batch.drop_column("warranty_term_months")
        batch.drop_column("activation_fee")
        batch.drop_column("contract_term_months")
        batch.drop_column("adt_system_type")
        batch.drop_column("interactive_services_provider")
        batch.drop_column("monitored_by")
        batch.drop_column("discount_affiliate_member_number")
        batch.drop_column("discount_affiliate")
        batch.drop_column("cancel_reason")
        batch.drop_column("cancel_date")
        batch.drop_column("canceled")
        batch.drop_column("monitoring_plan")
        batch.drop_column("currency")
        batch.drop_column("mmr_a_la_carte")
        batch.drop_column("mmr")
        batch.drop_column("account_number")
        batch.drop_column("adt_serial_man")
        batch.drop_column("adt_number")
        batch.drop_column("call_center_rep")
        batch.drop_column("lead_rep")
        batch.drop_column("trainee_trainer")
        batch.drop_column("sold_by")
        batch.drop_column("sale_date")
        batch.drop_column("parent_customer_id")
        batch.drop_column("custom_fields")
        batch.drop_column("description")
        batch.drop_column("company")
        batch.drop_column("source_campaign")
        batch.drop_column("source")
        batch.drop_column("dba_name")
        batch.drop_column("business_contact")
        batch.drop_column("business_name")
        batch.drop_column("account_class")
        batch.drop_column("account_type")
        batch.drop_column("credit_tracking_number")
        batch.drop_column("credit_score")
        batch.drop_column("spouse")
        batch.drop_column("ssn_index")
        batch.drop_column("ssn_enc")
        batch.drop_column("best_time_to_contact")
        batch.drop_column("other_phone_e164")
        batch.drop_column("other_phone")
        batch.drop_column("cell_phone_e164")
        batch.drop_column("cell_phone")
        batch.drop_column("work_phone_e164")
        batch.drop_column("work_phone")
        batch.drop_column("primary_phone_e164")
        batch.drop_column("primary_phone")
        batch.drop_column("cross_street")
        batch.drop_column("county")
        batch.drop_column("zip")
        batch.drop_column("state")
        batch.drop_column("city")
        batch.drop_column("address_line2")
        batch.drop_column("address_line1")
        batch.drop_column("language")
        batch.drop_column("birthdate_enc")
        batch.drop_column("location_id")
        batch.drop_column("kind")


# --- data of existing rows (frozen copies of this revision's rules) ----------------------------------


def _fold(text):
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().strip()


def _e164(raw):
    if not raw:
        return None
    try:
        parsed = phonenumbers.parse(raw, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _terms(row_id, first, last, email, e164):
    terms = {f"#{row_id}"}
    for text in (first, last):
        for word in re.split(r"[^\w'@.+-]+", _fold(text)):
            word = word.strip(".'-+")
            if word:
                terms.update({word, word.replace("'", "")})
                terms.update(p for p in re.findall(r"[a-z0-9]+", word) if len(p) >= 2 or p.isdigit())
    if email:
        folded = _fold(email)
        terms.update({folded, folded.split("@")[-1]})
    if e164:
        digits = phonenumbers.national_significant_number(phonenumbers.parse(e164, None))
        terms.update({digits, digits[-7:]})
    return {t[:120] for t in terms if t}


def _migrate_rows():
    bind = op.get_bind()
    customers = sa.table(
        "customers",
        sa.column("id", sa.Integer),
        sa.column("first_name", sa.String),
        sa.column("last_name", sa.String),
        sa.column("email", sa.String),
        sa.column("primary_phone", sa.String),
        sa.column("primary_phone_e164", sa.String),
        sa.column("sort_name", sa.String),
        sa.column("kind", sa.String),
        sa.column("updated_at", vigil_shared.db.UTCDateTime()),
        sa.column("last_activity_at", vigil_shared.db.UTCDateTime()),
    )
    terms = sa.table(
        "customer_search_terms",
        sa.column("customer_id", sa.Integer),
        sa.column("term", sa.String),
        sa.column("kind", sa.String),
        sa.column("location_id", sa.Integer),
        sa.column("sort_name", sa.String),
    )
    rows = bind.execute(
        sa.select(
            customers.c.id,
            customers.c.first_name,
            customers.c.last_name,
            customers.c.email,
            customers.c.primary_phone,
            customers.c.updated_at,
        )
    ).all()
    for row in rows:
        e164 = _e164(row.primary_phone)
        sort_name = f"{_fold(row.last_name)} {_fold(row.first_name)}".strip()[:220]
        bind.execute(
            customers.update()
            .where(customers.c.id == row.id)
            .values(primary_phone_e164=e164, sort_name=sort_name, kind="customer", last_activity_at=row.updated_at)
        )
        values = [
            {"customer_id": row.id, "term": term, "kind": "customer", "location_id": None, "sort_name": sort_name}
            for term in sorted(_terms(row.id, row.first_name, row.last_name, row.email, e164))
        ]
        if values:
            bind.execute(terms.insert(), values)
