-- Questionnaires keep their REDCap event's timepoint; the visit day is only compared with that
-- timepoint's window (an out-of-window visit is flagged, never moved). Inner joins to the
-- schedule drop rows of participants withdrawn with all_data. Narrow on purpose: the scoring
-- models read the item values from the staging view, joined to this table.
{{ site_partitioned() }}

with

records as (

    -- Only the rebuilt participants' rows are typed (in_rebuilt_partitions_listed).
    select * from {{ ref('stg_redcap__records') }}
    where {{ in_rebuilt_partitions_listed() }}

),

redcap_events as (

    select * from {{ ref('redcap_events') }}

),

scheduled as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where {{ in_rebuilt_partitions() }}

),

windowed as (

    select
        records.response_id,
        records.participant_id,
        records.redcap_event_name,
        records.repeat_instrument,
        records.repeat_instance,
        records.visit_date,
        records.carer_id,
        records.carer_relationship,
        records.quarantined_instruments,
        records.site,
        redcap_events.timepoint,
        scheduled.timepoint_order,
        scheduled.target_day,
        scheduled.window_start_day,
        scheduled.window_end_day,
        coalesce(records.repeat_instrument = 'carer_questionnaire', false) as is_carer_response,
        {{ dbt.datediff('scheduled.consent_date', 'records.visit_date', 'day') }} as study_day

    from records
    inner join redcap_events
        on records.redcap_event_name = redcap_events.redcap_event_name
    inner join scheduled
        on
            records.participant_id = scheduled.participant_id
            and redcap_events.timepoint = scheduled.timepoint

)

select
    *,
    -- Null when the visit date is unknown.
    study_day >= window_start_day and study_day <= window_end_day as is_in_window

from windowed
