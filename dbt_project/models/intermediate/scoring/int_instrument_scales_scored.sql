-- Generic scoring driven by seeds/instrument_scales.csv: a scale is scorable when no more of its
-- items are missing than max_items_missing allows (and its instrument was not quarantined); the
-- scoring method then gives the score:
--   sum            sum of items; with missing items either prorated (mean x items, rounded to
--                  `decimals`) or the plain sum of the valid items (HoNOS total)
--   sum_rescaled   the sum (prorated as for sum) placed linearly from the items' possible range
--                  onto the scale's min_score..max_score (SDM-Q-9: raw 0-45 x 20/9 = 0-100)
--   mean_rescaled  (mean of answered items - item minimum) / item range x 100 (CWS)
--   value_set      1 - sum of the decrements (int_utilities_valued)
--   unit_cost      sum of the item costs at the run's price year (int_service_use_items_costed)
--   conversion     lookup of another scale's score in score_conversions (SWEMWBS metric)
{{ site_partitioned() }}

with

summed as (

    select * from {{ ref('int_instrument_scales_summed') }}
    where {{ in_rebuilt_partitions() }}

),

instrument_scales as (

    select * from {{ ref('instrument_scales') }}

),

scale_items as (

    select * from {{ ref('scale_items') }}

),

item_ranges as (

    select
        field_name,
        min_value,
        max_value

    from {{ ref('instrument_items') }}

    union all

    select
        field_name,
        min_value,
        max_value

    from {{ ref('honos_items') }}

),

score_conversions as (

    select * from {{ ref('score_conversions') }}

),

utilities as (

    select * from {{ ref('int_utilities_valued') }}
    where {{ in_rebuilt_partitions() }}

),

costed_items as (

    select * from {{ ref('int_service_use_items_costed') }}
    where {{ in_rebuilt_partitions() }}

),

scale_properties as (

    select
        scale_items.scale,
        count(*) as n_items,
        min(item_ranges.min_value) as item_min_value,
        max(item_ranges.max_value) as item_max_value

    from scale_items
    left join item_ranges
        on scale_items.field_name = item_ranges.field_name
    group by scale_items.scale

),

response_costs as (

    select
        collected_in,
        response_id,
        scale,
        count(cost) as n_items_costed,
        sum(cost) as cost

    from costed_items
    group by
        collected_in,
        response_id,
        scale

),

assessed as (

    select
        summed.*,
        instrument_scales.scoring_method,
        instrument_scales.is_prorated,
        instrument_scales.decimals,
        instrument_scales.min_score,
        instrument_scales.max_score,
        scale_properties.n_items,
        scale_properties.item_min_value,
        scale_properties.item_max_value,
        scale_properties.n_items - summed.n_items_answered as n_items_missing,
        not summed.is_quarantined
        and scale_properties.n_items - summed.n_items_answered
        <= instrument_scales.max_items_missing as is_scorable

    from summed
    inner join instrument_scales
        on summed.scale = instrument_scales.scale
    inner join scale_properties
        on summed.scale = scale_properties.scale

),

scored as (

    select
        assessed.collected_in,
        assessed.response_id,
        assessed.participant_id,
        assessed.timepoint,
        assessed.instrument,
        assessed.scale,
        assessed.scoring_method,
        assessed.n_items,
        assessed.n_items_answered,
        assessed.n_items_coded_missing,
        assessed.n_items_missing,
        assessed.is_quarantined,
        assessed.is_scorable,
        cast(case
            when not assessed.is_scorable then null
            when
                assessed.scoring_method = 'sum'
                and (assessed.n_items_missing = 0 or not assessed.is_prorated)
                then assessed.item_sum
            when assessed.scoring_method = 'sum'
                then round(
                    cast(assessed.item_sum as {{ dbt.type_numeric() }})
                    * assessed.n_items / assessed.n_items_answered,
                    assessed.decimals
                )
            when assessed.scoring_method = 'sum_rescaled'
                then round(
                    (
                        cast(assessed.item_sum as {{ dbt.type_numeric() }})
                        * assessed.n_items / assessed.n_items_answered
                        - assessed.n_items * assessed.item_min_value
                    )
                    / (assessed.n_items * (assessed.item_max_value - assessed.item_min_value))
                    * (assessed.max_score - assessed.min_score)
                    + assessed.min_score,
                    assessed.decimals
                )
            when assessed.scoring_method = 'mean_rescaled'
                then round(
                    (
                        cast(assessed.item_sum as {{ dbt.type_numeric() }})
                        / assessed.n_items_answered
                        - assessed.item_min_value
                    )
                    / (assessed.item_max_value - assessed.item_min_value) * 100,
                    assessed.decimals
                )
            when assessed.scoring_method = 'value_set' then utilities.utility
            when
                assessed.scoring_method = 'unit_cost'
                and response_costs.n_items_costed = assessed.n_items
                then response_costs.cost
        end as {{ dbt.type_numeric() }}) as score,
        assessed.study_day,
        assessed.is_in_window,
        assessed.is_analysis_record,
        assessed.is_carer_response

    from assessed
    left join utilities
        on
            assessed.collected_in = utilities.collected_in
            and assessed.response_id = utilities.response_id
            and assessed.scale = utilities.scale
    left join response_costs
        on
            assessed.collected_in = response_costs.collected_in
            and assessed.response_id = response_costs.response_id
            and assessed.scale = response_costs.scale

),

converted as (

    select
        scored.collected_in,
        scored.response_id,
        scored.participant_id,
        scored.timepoint,
        scored.instrument,
        conversion_scales.scale,
        conversion_scales.scoring_method,
        scored.n_items,
        scored.n_items_answered,
        scored.n_items_coded_missing,
        scored.n_items_missing,
        scored.is_quarantined,
        scored.is_scorable,
        cast(score_conversions.converted_score as {{ dbt.type_numeric() }}) as score,
        scored.study_day,
        scored.is_in_window,
        scored.is_analysis_record,
        scored.is_carer_response

    from scored
    inner join instrument_scales as conversion_scales
        on
            scored.scale = conversion_scales.derived_from_scale
            and conversion_scales.scoring_method = 'conversion'
    left join score_conversions
        on
            conversion_scales.scale = score_conversions.scale
            and scored.score = score_conversions.raw_score

)

select * from scored
union all
select * from converted
