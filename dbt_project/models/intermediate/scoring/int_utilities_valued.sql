-- Index = 1 - the sum of the decrements of each dimension's level, for every value set of every
-- value-set-scored scale (EQ-5D-5L: England 2018 and UK 2026); all dimensions are required.
{{ site_partitioned() }}

with

items as (

    select * from {{ ref('int_questionnaire_items_unpivoted') }}
    where {{ in_rebuilt_partitions() }}

),

scale_items as (

    select * from {{ ref('scale_items') }}

),

value_set_scales as (

    select * from {{ ref('instrument_scales') }}
    where scoring_method = 'value_set'

),

value_sets as (

    select * from {{ ref('eq5d5l_value_sets') }}

),

scale_sizes as (

    select
        scale,
        count(*) as n_dimensions

    from scale_items
    group by scale

),

decrements as (

    select
        items.collected_in,
        items.response_id,
        -- One participant per response: carried so that the model is built by site.
        items.participant_id,
        value_set_scales.scale,
        value_set_scales.value_set,
        count(value_sets.decrement) as n_dimensions_valued,
        sum(value_sets.decrement) as decrement_sum

    from items
    inner join scale_items
        on items.field_name = scale_items.field_name
    inner join value_set_scales
        on scale_items.scale = value_set_scales.scale
    left join value_sets
        on
            value_set_scales.value_set = value_sets.value_set
            and items.field_name = value_sets.field_name
            and items.item_value = value_sets.level
    group by
        items.collected_in,
        items.response_id,
        items.participant_id,
        value_set_scales.scale,
        value_set_scales.value_set

)

select
    decrements.participant_id,
    decrements.collected_in,
    decrements.response_id,
    decrements.scale,
    decrements.value_set,
    decrements.n_dimensions_valued,
    case
        when decrements.n_dimensions_valued = scale_sizes.n_dimensions
            then 1 - decrements.decrement_sum
    end as utility

from decrements
inner join scale_sizes
    on decrements.scale = scale_sizes.scale
