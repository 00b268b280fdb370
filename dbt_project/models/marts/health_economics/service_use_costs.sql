{{ site_partitioned() }}

with

costed as (

    select * from {{ ref('int_service_use_items_costed') }}
    where {{ in_rebuilt_partitions() }}

),

scheduled as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where {{ in_rebuilt_partitions() }}

)

select
    costed.participant_id,
    costed.timepoint,
    costed.service_item,
    scheduled.site,
    scheduled.arm,
    scheduled.timepoint_order,
    costed.quantity,
    costed.quantity_missing_reason,
    costed.unit,
    cast(costed.unit_cost as decimal(12, 2)) as unit_cost,
    cast(costed.cost as decimal(12, 2)) as cost,
    costed.price_year,
    costed.cost_source,
    cast(costed.source_unit_cost as decimal(12, 2)) as source_unit_cost,
    costed.source_price_year,
    cast(costed.inflation_factor as decimal(12, 6)) as inflation_factor,
    costed.has_price_year_gap

from costed
inner join scheduled
    on
        costed.participant_id = scheduled.participant_id
        and costed.timepoint = scheduled.timepoint
