"""credit checks (pulls and manual scores) and the company's credit settings"""

from vigil_shared.schema_spec import tables_migration

revision = "0004"
down_revision = "0003"


upgrade, downgrade = tables_migration(
    """
        table credit_checks sqlite_autoincrement
          id, customer_id    int
          bureau             str(20)   null
          status             str(20)
          request_enc        text      null
          score              int       null
          grade              str(10)   null
          transaction_id     str(100)  null
          reason             str(500)  null
          response_enc       text      null
          attempts           int
          requested_by       str(100)  null
          requested_by_name  str(150)  null
          request_id         str(64)   null
          applied            bool      default=false
          applied_at         datetime  null
          applied_by         str(150)  null
          skipped_at         datetime  null
          created_at         datetime
          run_at             datetime  null
          version            int
          pk_credit_checks: primary key (id)
          ix_credit_checks_customer: index (customer_id, bureau, created_at)
        table credit_settings sqlite_autoincrement
          id, repeat_days  int
          grade_bands      json
          version          int
          pk_credit_settings: primary key (id)
    """
)
