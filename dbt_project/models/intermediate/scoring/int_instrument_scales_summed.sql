-- One scan of each wide source row: per scale, how many of its items were answered, how many
-- carry a missing-data code, and their sum. The CASE expressions are generated from the seeds
-- (instrument_scales, scale_items), so item values are never unpivoted into rows. Each row also
-- carries what its source's window says of it (study day, in window, analysis record, a carer's
-- response), so that the scores standing for a timepoint are a filter of the scored rows
-- (int_timepoint_scores_selected) rather than a second join of every score with its source.
{%- set redcap_scales = scale_definitions('redcap') %}
{%- set epr_scales = scale_definitions('epr') %}
{{ site_partitioned() }}


with

redcap_records as (

    -- The wide typed values, for the responses of participants in the marts.
    select
        records.*,
        windowed.timepoint,
        windowed.study_day,
        windowed.is_in_window,
        windowed.is_carer_response

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

honos_ratings as (

    select * from {{ ref('int_honos_ratings_windowed') }}
    where {{ in_rebuilt_partitions() }}

),

redcap_scales as (

    select
        'redcap' as collected_in,
        redcap_records.response_id,
        redcap_records.participant_id,
        redcap_records.timepoint,
        scales.instrument,
        scales.scale,
        {{ scale_aggregate('redcap_records', redcap_scales, 'scales.scale', 'answered') }}
            as n_items_answered,
        {{ scale_aggregate('redcap_records', redcap_scales, 'scales.scale', 'coded_missing') }}
            as n_items_coded_missing,
        {{ scale_aggregate('redcap_records', redcap_scales, 'scales.scale', 'sum') }}
            as item_sum,
        coalesce(
            (',' || replace(redcap_records.quarantined_instruments, ' ', '') || ',')
            like ('%,' || scales.instrument || ',%'),
            false
        ) as is_quarantined,
        redcap_records.study_day,
        redcap_records.is_in_window,
        -- A questionnaire without a visit date cannot be checked and stays an analysis record.
        coalesce(redcap_records.is_in_window, true) as is_analysis_record,
        redcap_records.is_carer_response

    from redcap_records
    cross join (
        values {{ scale_rows(redcap_scales) }}
    ) as scales (instrument, scale)

),

epr_scales as (

    select
        'epr' as collected_in,
        honos_ratings.response_id,
        honos_ratings.participant_id,
        honos_ratings.timepoint,
        scales.instrument,
        scales.scale,
        {{ scale_aggregate('honos_ratings', epr_scales, 'scales.scale', 'answered') }}
            as n_items_answered,
        {{ scale_aggregate('honos_ratings', epr_scales, 'scales.scale', 'coded_missing') }}
            as n_items_coded_missing,
        {{ scale_aggregate('honos_ratings', epr_scales, 'scales.scale', 'sum') }}
            as item_sum,
        false as is_quarantined,
        honos_ratings.study_day,
        honos_ratings.is_in_window,
        honos_ratings.is_analysis_record,
        false as is_carer_response

    from honos_ratings
    cross join (
        values {{ scale_rows(epr_scales) }}
    ) as scales (instrument, scale)

),

unioned as (

    select * from redcap_scales
    union all
    select * from epr_scales

)

-- A scale of an instrument nobody filled in is not a response.
select * from unioned
where n_items_answered + n_items_coded_missing > 0 or is_quarantined
