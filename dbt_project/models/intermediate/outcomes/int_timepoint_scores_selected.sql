-- The scores that stand for a participant's timepoint: the REDCap event's questionnaire row (not
-- the carers' rows) and the HoNOS analysis rating (nearest the target day within the window).
-- An out-of-window questionnaire keeps its timepoint but is not an analysis record; one without a
-- visit date cannot be checked and stays an analysis record.
--
-- A view: the scored rows carry their source's window already (int_instrument_scales_summed), so
-- this is a filter of them. Persisted, it was a second copy of nearly every score, and the join
-- that made it the costliest step of a full build at 1,000,000 participants
-- (docs/speed-history.md, "Issue 14, twelfth round"). Its rows belong to the participants' sites
-- as the scored rows do.
{{ config(materialized='view', meta={'site_rows': 'participant_id'}) }}

with

scored as (

    select * from {{ ref('int_instrument_scales_scored') }}

)

select
    participant_id,
    timepoint,
    instrument,
    scale,
    collected_in,
    response_id,
    score,
    is_scorable,
    is_quarantined,
    n_items,
    n_items_answered,
    n_items_missing,
    study_day,
    is_in_window,
    is_analysis_record

from scored
where
    (collected_in = 'redcap' and not is_carer_response)
    or (collected_in = 'epr' and is_analysis_record)
