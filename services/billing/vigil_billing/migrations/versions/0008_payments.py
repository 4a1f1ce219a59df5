"""payments, their allocations to invoices, and refunds"""

from vigil_shared.schema_spec import tables_migration

revision = "0008"
down_revision = "0007"


upgrade, downgrade = tables_migration(
    """
        table payments
          id                                  int       pk
          customer_id                         int
          method                              str(10)
          billing_method_id                   int       null
          check_number                        str(40)   null
          memo                                str(500)  null
          amount                              bigint
          currency                            str(3)
          status                              str(20)
          processor_key, processor_charge_id  str(80)   null
          failure_code                        str(60)   null
          failure_message                     str(200)  null
          amount_refunded, unallocated        bigint
          allocate_to                         json
          received_at                         datetime  null
          created_at, updated_at              datetime
          version                             int
          pk_payments: primary key (id)
          uq_payments_processor_key: unique (processor_key)
          ix_payments_customer_id: index (customer_id)
        table payment_allocations
          id                      int       pk
          payment_id, invoice_id  int
          amount                  bigint
          created_at              datetime
          pk_payment_allocations: primary key (id)
          fk_payment_allocations_payment_id_payments: foreign key (payment_id) -> payments (id)
          fk_payment_allocations_invoice_id_invoices: foreign key (invoice_id) -> invoices (id)
          ix_payment_allocations_payment_id: index (payment_id)
          ix_payment_allocations_invoice_id: index (invoice_id)
        table refunds
          id                   int       pk
          payment_id           int
          amount               bigint
          processor_refund_id  str(80)   null
          reason               str(500)  null
          created_at           datetime
          pk_refunds: primary key (id)
          fk_refunds_payment_id_payments: foreign key (payment_id) -> payments (id)
          ix_refunds_payment_id: index (payment_id)
    """
)
