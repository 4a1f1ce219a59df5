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
from vigil_shared.schema_spec import add_columns, create_tables, drop_columns, drop_indexes, drop_tables

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # customers first: on SQLite a batch rebuild drops the old table, which would cascade to children
    with op.batch_alter_table("customers") as batch:
        add_columns(
            batch,
            """
            kind                                                  str(10)    default="customer"
            location_id                                           int        null
            birthdate_enc                                         text       null
            language                                              str(20)    null
            address_line1, address_line2                          str(200)   null
            city                                                  str(100)   null
            state                                                 str(2)     null
            zip                                                   str(10)    null
            county                                                str(100)   null
            cross_street                                          str(200)   null
            primary_phone                                         str(40)    null
            primary_phone_e164                                    str(20)    null
            work_phone                                            str(40)    null
            work_phone_e164                                       str(20)    null
            cell_phone                                            str(40)    null
            cell_phone_e164                                       str(20)    null
            other_phone                                           str(40)    null
            other_phone_e164                                      str(20)    null
            best_time_to_contact                                  str(200)   null
            ssn_enc                                               text       null
            ssn_index                                             str(64)    null
            spouse                                                str(200)   null
            credit_score                                          int        null
            credit_tracking_number                                str(100)   null
            account_type                                          str(20)    null
            account_class                                         str(100)   null
            business_name, business_contact, dba_name             str(200)   null
            source, source_campaign                               str(100)   null
            company                                               str(200)   null
            description                                           text       null
            custom_fields                                         json       default="{}"
            parent_customer_id                                    int        null
            sale_date                                             date       null
            sold_by, trainee_trainer, lead_rep, call_center_rep   str(100)   null
            adt_number, adt_serial_man, account_number            str(50)    null
            mmr                                                   int        null
            mmr_a_la_carte                                        bool       default=false
            currency                                              str(3)     default="USD"
            monitoring_plan                                       str(100)   null
            canceled                                              bool       default=false
            cancel_date                                           date       null
            cancel_reason                                         str(200)   null
            discount_affiliate, discount_affiliate_member_number  str(100)   null
            monitored_by, interactive_services_provider           str(100)   null
            adt_system_type                                       str(100)   null
            contract_term_months, activation_fee                  int        null
            warranty_term_months                                  int        null
            dealer_number                                         str(50)    null
            collections_date                                      date       null
            funding_status                                        str(50)    null
            funded_date                                           date       null
            installation_appointment_id                           int        null
            install_date                                          date       null
            install_tech, install_tech_reports_to                 str(100)   null
            confirmation_number_enc, receiver_number_enc          text       null
            abort_code_enc                                        text       null
            installed, two_way_voice, cellular_backup             bool       default=false
            guard_response, maintenance, invoicing, aarp          bool       default=false
            tellular, pulse                                       bool       default=false
            callback_at                                           datetime   null
            lead_disposition                                      str(100)   null
            callcenter_comments                                   text       null
            lead_status                                           str(50)    null
            lead_comments                                         text       null
            sort_name                                             cstr(220)  default=""
            name_address_key                                      str(400)   null
            created_by                                            str(100)   null
            converted_at, archived_at                             datetime   null
            last_activity_at                                      datetime   default=now
        """,
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
    create_tables(
        op,
        """
        table custom_fields
          id          int
          key         str(50)
          label       str(100)
          type        str(10)
          options     json
          required    bool
          applies_to  str(10)
          position    int
          active      bool
          created_at  datetime
          version     int
          pk_custom_fields: primary key (id)
          uq_custom_fields_key: unique (key)
        table property_accounts
          property_id     int       noautoinc
          customer_id     int
          account_number  str(100)  null
          deleted         bool
          updated_at      datetime
          pk_property_accounts: primary key (property_id)
          ix_property_accounts_customer_id: index (customer_id)
        table tags
          id              int
          name, name_key  str(50)
          color           str(7)    null
          created_at      datetime
          version         int
          pk_tags: primary key (id)
          uq_tags_name_key: unique (name_key)
        table customer_contacts
          id, customer_id         int
          type                    str(10)
          name                    str(200)
          relation, role          str(100)  null
          phones                  json
          email                   str(254)  null
          has_key                 bool
          call_priority           int       null
          passcode_enc            text      null
          is_primary              bool
          created_at, updated_at  datetime
          version                 int
          fk_customer_contacts_customer_id_customers: foreign key (customer_id) -> customers (id) on delete CASCADE
          pk_customer_contacts: primary key (id)
          ix_customer_contacts_customer: index (customer_id, type, call_priority)
        table customer_files
          id, customer_id  int
          filename         str(255)
          content_type     str(100)
          size             int
          sha256           str(64)
          storage_key      str(100)
          description      str(500)  null
          uploaded_by      str(100)  null
          created_at       datetime
          fk_customer_files_customer_id_customers: foreign key (customer_id) -> customers (id) on delete CASCADE
          pk_customer_files: primary key (id)
          uq_customer_files_storage_key: unique (storage_key)
          ix_customer_files_customer_id: index (customer_id)
        table customer_history
          id, customer_id                                     int
          at                                                  datetime
          actor_id, actor_name                                str(100)  null
          source                                              str(20)
          client_ip, request_id                               str(64)   null
          action                                              str(30)
          target_type                                         str(20)
          target_id                                           int       null
          field                                               str(100)  null
          old_value, new_value, old_value_enc, new_value_enc  text      null
          confidential                                        str(30)   null
          fk_customer_history_customer_id_customers: foreign key (customer_id) -> customers (id) on delete CASCADE
          pk_customer_history: primary key (id)
          ix_customer_history_customer: index (customer_id, at, id)
        table customer_notes
          id, customer_id         int
          kind                    str(10)
          text                    text
          urgent                  bool
          assignee                str(100)  null
          due_date                date      null
          priority                str(10)   null
          status                  str(20)   null
          created_by              str(100)  null
          created_at, updated_at  datetime
          version                 int
          fk_customer_notes_customer_id_customers: foreign key (customer_id) -> customers (id) on delete CASCADE
          pk_customer_notes: primary key (id)
          ix_customer_notes_customer: index (customer_id, urgent, created_at)
        table customer_search_terms
          id, customer_id  int
          term             cstr(120)
          kind             str(10)
          location_id      int        null
          sort_name        cstr(220)
          fk_customer_search_terms_customer_id_customers: foreign key (customer_id) -> customers (id) on delete CASCADE
          pk_customer_search_terms: primary key (id)
          ix_customer_search_terms_customer_id: index (customer_id)
          ix_customer_search_terms_lookup: index (term, location_id, kind, sort_name, customer_id)
        table customer_tags
          customer_id, tag_id  int
          applied_at           datetime
          applied_by           str(100)  null
          fk_customer_tags_customer_id_customers: foreign key (customer_id) -> customers (id) on delete CASCADE
          fk_customer_tags_tag_id_tags: foreign key (tag_id) -> tags (id) on delete CASCADE
          pk_customer_tags: primary key (customer_id, tag_id)
          ix_customer_tags_tag_id: index (tag_id)
    """,
    )
    _migrate_rows()


def downgrade() -> None:
    drop_tables(
        op,
        """
        customer_tags customer_search_terms customer_notes customer_history customer_files
        customer_contacts tags property_accounts custom_fields
        """,
    )
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=40), nullable=True))
    op.execute("UPDATE customers SET phone = primary_phone")
    with op.batch_alter_table("customers") as batch:
        batch.drop_constraint(op.f("fk_customers_parent_customer_id_customers"), type_="foreignkey")
        drop_indexes(
            batch,
            """
            ix_customers_work_phone_e164 ix_customers_ssn_index ix_customers_sort
            ix_customers_primary_phone_e164 ix_customers_parent_customer_id
            ix_customers_other_phone_e164 ix_customers_name_address_key ix_customers_location_id
            ix_customers_created ix_customers_cell_phone_e164 ix_customers_activity
            """,
        )
        drop_columns(
            batch,
            """
            last_activity_at archived_at converted_at created_by name_address_key sort_name
            lead_comments lead_status callcenter_comments lead_disposition callback_at pulse
            tellular aarp invoicing maintenance guard_response cellular_backup two_way_voice
            installed abort_code_enc receiver_number_enc confirmation_number_enc
            install_tech_reports_to install_tech install_date installation_appointment_id
            funded_date funding_status collections_date dealer_number warranty_term_months
            activation_fee contract_term_months adt_system_type interactive_services_provider
            monitored_by discount_affiliate_member_number discount_affiliate cancel_reason
            cancel_date canceled monitoring_plan currency mmr_a_la_carte mmr account_number
            adt_serial_man adt_number call_center_rep lead_rep trainee_trainer sold_by sale_date
            parent_customer_id custom_fields description company source_campaign source dba_name
            business_contact business_name account_class account_type credit_tracking_number
            credit_score spouse ssn_index ssn_enc best_time_to_contact other_phone_e164 other_phone
            cell_phone_e164 cell_phone work_phone_e164 work_phone primary_phone_e164 primary_phone
            cross_street county zip state city address_line2 address_line1 language birthdate_enc
            location_id kind
        """,
        )


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
