-- The data cut of each site: the acute-care extract is complete up to its batch's export time,
-- so the date of the export_id of the site's current acute_care.csv (the newest batch that
-- delivered an accepted version of it, as ingestion's current snapshot) is the last day the EPR
-- is known. A site that never delivered the file has no row: no data cut.
with

ledger_entries as (

    select * from {{ ref('stg_ingestion__load_ledger_entries') }}
    where file = 'acute_care.csv' and status = 'loaded'

),

current_exports as (

    select
        site,
        max(export_id) as export_id

    from ledger_entries
    group by site

)

select
    site,
    export_id,
    cast(
        substring(export_id, 1, 4)
        || '-' || substring(export_id, 5, 2)
        || '-' || substring(export_id, 7, 2)
        as date
    ) as data_cut_date

from current_exports
