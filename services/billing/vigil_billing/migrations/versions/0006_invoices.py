"""invoices, their lines and the per-company invoice number counter"""

from vigil_shared.schema_spec import tables_migration

revision = "0006"
down_revision = "0005"


upgrade, downgrade = tables_migration(
    """
        table invoice_counters
          id           int     noautoinc
          last_number  bigint
          pk_invoice_counters: primary key (id)
        table invoices
          id                                       int       pk
          customer_id, bill_to_customer_id         int
          status                                   str(20)
          number                                   bigint    null
          currency                                 str(3)
          issue_date, due_date                     date      null
          memo                                     str(500)  null
          subtotal, tax_total, total, amount_paid  bigint
          recurring_invoice_id                     int       null
          period_key                               str(60)   null
          void_reason                              str(500)  null
          voided_at                                datetime  null
          created_at, updated_at                   datetime
          version                                  int
          pk_invoices: primary key (id)
          uq_invoices_number: unique (number)
          uq_invoices_period_key: unique (period_key)
          ix_invoices_customer_id: index (customer_id)
          ix_invoices_bill_to_customer_id: index (bill_to_customer_id)
          ix_invoices_recurring_invoice_id: index (recurring_invoice_id)
        table invoice_lines
          id                    int       pk
          invoice_id, position  int
          description           str(200)
          quantity              int
          unit_price, amount    bigint
          tax_rate_bp           int
          tax                   bigint
          pk_invoice_lines: primary key (id)
          fk_invoice_lines_invoice_id_invoices: foreign key (invoice_id) -> invoices (id) on delete CASCADE
          ix_invoice_lines_invoice_id: index (invoice_id)
    """
)
