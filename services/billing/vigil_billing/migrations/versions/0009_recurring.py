"""recurring invoices and scheduled payments"""

from vigil_shared.schema_spec import tables_migration

revision = "0009"
down_revision = "0008"


upgrade, downgrade = tables_migration(
    """
        table recurring_invoices
          id                                int       pk
          customer_id, bill_to_customer_id  int
          lines                             json
          memo                              str(500)  null
          interval_months                   int
          start_date                        date
          next_date, end_date               date      null
          remaining                         int       null
          status                            str(20)
          created_at, updated_at            datetime
          version                           int
          pk_recurring_invoices: primary key (id)
          ix_recurring_invoices_customer_id: index (customer_id)
          ix_recurring_invoices_bill_to_customer_id: index (bill_to_customer_id)
          ix_recurring_invoices_next_date: index (next_date)
        table scheduled_payments
          id                              int       pk
          customer_id, billing_method_id  int
          amount                          bigint
          due_date                        date
          next_attempt_on                 date      null
          attempts                        int
          status                          str(20)
          payment_id                      int       null
          failure_code                    str(60)   null
          failure_message                 str(200)  null
          created_at, updated_at          datetime
          version                         int
          pk_scheduled_payments: primary key (id)
          ix_scheduled_payments_customer_id: index (customer_id)
          ix_scheduled_payments_next_attempt_on: index (next_attempt_on)
    """
)
