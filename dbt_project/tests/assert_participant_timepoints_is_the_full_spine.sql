-- Every participant has exactly one row per scheduled timepoint, collected or not.
{{ config(meta={'dagster': {'ref': {'name': 'participant_timepoints'}}}) }}
with

expected as (

    select participants.participant_id, visit_windows.timepoint
    from {{ ref('participants') }} as participants
    cross join {{ ref('visit_windows') }} as visit_windows

)

select expected.participant_id, expected.timepoint
from expected
left join {{ ref('participant_timepoints') }} as participant_timepoints
    on
        expected.participant_id = participant_timepoints.participant_id
        and expected.timepoint = participant_timepoints.timepoint
where participant_timepoints.participant_id is null
