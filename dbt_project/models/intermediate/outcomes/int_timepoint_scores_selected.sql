-- The scores that stand for a participant's timepoint: the REDCap event's questionnaire row (not
-- the carers' rows) and the HoNOS analysis rating (nearest the target day within the window).
-- An out-of-window questionnaire keeps its timepoint but is not an analysis record; one without a
-- visit date cannot be checked and stays an analysis record.
{{ site_partitioned() }}

with

scored as (

    select * from {{ ref('int_instrument_scales_scored') }}
    where {{ in_rebuilt_partitions() }}

),

questionnaires as (

    select * from {{ ref('int_redcap_records_windowed') }}
    where not is_carer_response and {{ in_rebuilt_partitions() }}

),

honos_ratings as (

    select * from {{ ref('int_honos_ratings_windowed') }}
    where is_analysis_record and {{ in_rebuilt_partitions() }}

),

questionnaire_scores as (

    select
        scored.participant_id,
        scored.timepoint,
        scored.instrument,
        scored.scale,
        scored.collected_in,
        scored.response_id,
        scored.score,
        scored.is_scorable,
        scored.is_quarantined,
        scored.n_items,
        scored.n_items_answered,
        scored.n_items_missing,
        questionnaires.study_day,
        questionnaires.is_in_window,
        coalesce(questionnaires.is_in_window, true) as is_analysis_record

    from scored
    inner join questionnaires
        on scored.response_id = questionnaires.response_id
    where scored.collected_in = 'redcap'

),

honos_scores as (

    select
        scored.participant_id,
        scored.timepoint,
        scored.instrument,
        scored.scale,
        scored.collected_in,
        scored.response_id,
        scored.score,
        scored.is_scorable,
        scored.is_quarantined,
        scored.n_items,
        scored.n_items_answered,
        scored.n_items_missing,
        honos_ratings.study_day,
        honos_ratings.is_in_window,
        honos_ratings.is_analysis_record

    from scored
    inner join honos_ratings
        on scored.response_id = honos_ratings.response_id
    where scored.collected_in = 'epr'

)

select * from questionnaire_scores
union all
select * from honos_scores
