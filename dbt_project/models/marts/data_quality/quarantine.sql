-- Ingestion's quarantine as sites are told about it. Holds no participant identifier at all, so
-- it cannot be filtered for all_data withdrawals, and never an offending identifier's value.
select
    site,
    export_id,
    file,
    line,
    column_name as "column",
    reason,
    detail,
    scope,
    instrument,
    is_current_export,
    quarantined_at

from {{ ref('stg_ingestion__quarantine_entries') }}
