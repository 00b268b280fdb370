-- Every participant has exactly one row per timepoint of their protocol, collected or not, and
-- none of another protocol's timepoints.
{{ config(meta={'dagster': {'ref': {'name': 'participant_timepoints'}}}) }}
with

expected as (

    select participants.participant_id, protocol_timepoints.timepoint
    from {{ ref('participants') }} as participants
    inner join {{ ref('protocol_timepoints') }} as protocol_timepoints
        on participants.protocol = protocol_timepoints.protocol

)

select
    coalesce(expected.participant_id, participant_timepoints.participant_id) as participant_id,
    coalesce(expected.timepoint, participant_timepoints.timepoint) as timepoint
from expected
full outer join {{ ref('participant_timepoints') }} as participant_timepoints
    on
        expected.participant_id = participant_timepoints.participant_id
        and expected.timepoint = participant_timepoints.timepoint
where participant_timepoints.participant_id is null or expected.participant_id is null
