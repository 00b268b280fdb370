-- Item-level rows only where the item's identity matters for the score: value-set lookups
-- (EQ-5D-5L dimensions) and unit costs (service use). Sum-scored scales never come through here.
{%- set item_scales = scale_definitions('redcap', ['value_set', 'unit_cost']) %}
{{ site_partitioned() }}


with

redcap_records as (

    select
        records.*,
        windowed.timepoint

    from {{ ref('stg_redcap__records') }} as records
    inner join {{ ref('int_redcap_records_windowed') }} as windowed
        on records.response_id = windowed.response_id
    -- Both sides filtered: the join then hashes the rebuilt participants' windows only, not
    -- every participant's (int_instrument_scales_summed, a tenth of a site at 1,000,000:
    -- 3.1 -> 2.1 s). The typed view is filtered by a list of them, so that only their rows
    -- are typed (in_rebuilt_partitions_listed).
    where
        {{ in_rebuilt_partitions_listed('records.participant_id') }}
        and {{ in_rebuilt_partitions('windowed.participant_id') }}

),

unpivoted as (

    select
        'redcap' as collected_in,
        redcap_records.response_id,
        redcap_records.participant_id,
        redcap_records.timepoint,
        items.instrument,
        items.field_name,
        {{ item_column('redcap_records', item_scales, 'items.field_name') }} as item_value,
        {{ item_column('redcap_records', item_scales, 'items.field_name', '_missing_reason') }}
            as missing_reason

    from redcap_records
    cross join (
        values {{ item_rows(item_scales) }}
    ) as items (instrument, field_name)

)

select * from unpivoted
where item_value is not null or missing_reason is not null
