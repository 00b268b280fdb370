-- What a trial manager sends back to a site: every due, scheduled instrument that was not
-- scored, with the reason and the date its window closed.
{{ site_partitioned() }}

with

classified as (

    select * from {{ ref('int_scheduled_instruments_classified') }}
    where
        is_expected
        and {{ timepoint_status() }} = 'due'
        and status in ('missing', 'not_scored')
        and {{ in_rebuilt_partitions() }}

)

select
    site,
    participant_id,
    timepoint,
    instrument,
    status,
    window_end_date as window_closed_date,
    arm,
    timepoint_order,
    is_quarantined,
    case
        when is_quarantined then 'quarantined_at_ingestion'
        when status = 'not_scored' then 'too_many_items_missing'
        else 'not_received'
    end as reason,
    {{ dbt.datediff('window_end_date', reference_date(), 'day') }} as days_since_window_closed

from classified
