-- Every item of every received unit-cost form (service use), with its quantity, the unit cost
-- brought to the run's price year through the NHS Cost Inflation Index, and the cost. A unit cost
-- whose price year the index cannot bridge stays unpriced (has_price_year_gap) instead of adding
-- pounds of different years; a quantity of 0 costs 0 in any price year.
{{ site_partitioned() }}

with

summed as (

    select * from {{ ref('int_instrument_scales_summed') }}
    where {{ in_rebuilt_partitions() }}

),

cost_scales as (

    select * from {{ ref('instrument_scales') }}
    where scoring_method = 'unit_cost'

),

scale_items as (

    select * from {{ ref('scale_items') }}

),

items as (

    -- The unit-cost scales' items only: the unpivoted rows also hold every value-set item, and
    -- leaving those out of the join cut this query from 7.1 to 5.2 s at 1,000,000 participants.
    select * from {{ ref('int_questionnaire_items_unpivoted') }}
    where
        {{ in_rebuilt_partitions() }}
        and field_name in (
            select scale_items.field_name from scale_items
            inner join cost_scales on scale_items.scale = cost_scales.scale
        )

),

unit_costs as (

    select * from {{ ref('unit_costs') }}

),

inflation_index as (

    select * from {{ ref('nhs_cost_inflation_index') }}

),

forms as (

    select
        summed.collected_in,
        summed.response_id,
        summed.participant_id,
        summed.timepoint,
        summed.instrument,
        summed.scale,
        scale_items.field_name as service_item

    from summed
    inner join cost_scales
        on summed.scale = cost_scales.scale
    inner join scale_items
        on summed.scale = scale_items.scale

),

priced as (

    select
        forms.*,
        items.item_value as quantity,
        items.missing_reason as quantity_missing_reason,
        unit_costs.unit,
        unit_costs.unit_cost as source_unit_cost,
        unit_costs.price_year as source_price_year,
        unit_costs.source as cost_source,
        case
            when unit_costs.price_year = '{{ var("price_year") }}' then 1
            else target_index.index_value / source_index.index_value
        end as inflation_factor

    from forms
    left join items
        on
            forms.collected_in = items.collected_in
            and forms.response_id = items.response_id
            and forms.service_item = items.field_name
    left join unit_costs
        on forms.service_item = unit_costs.service_item
    left join inflation_index as source_index
        on unit_costs.price_year = source_index.price_year
    left join inflation_index as target_index
        on target_index.price_year = '{{ var("price_year") }}'

),

costed as (

    select
        *,
        '{{ var("price_year") }}' as price_year,
        inflation_factor is null as has_price_year_gap,
        round(source_unit_cost * inflation_factor, 2) as unit_cost

    from priced

)

select
    *,
    case
        when quantity = 0 then 0
        else quantity * unit_cost
    end as cost

from costed
