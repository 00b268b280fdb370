-- Every participant has exactly one row per timepoint of their protocol, collected or not, and
-- none of another protocol's timepoints. On a build of some sites, the participants either model
-- rebuilt are read (in_rebuilt_rows_of, macros/site_partitions.sql), the same on both sides.
{{ config(meta={'dagster': {'ref': {'name': 'participant_timepoints'}}}) }}
{%- set rebuilt = in_rebuilt_rows_of(['participants', 'participant_timepoints']) %}
with

expected as (

    select participants.participant_id, protocol_timepoints.timepoint
    from {{ ref('participants') }} as participants
    inner join {{ ref('protocol_timepoints') }} as protocol_timepoints
        on participants.protocol = protocol_timepoints.protocol
    where {{ rebuilt }}

),

spine as (

    select participant_id, timepoint
    from {{ ref('participant_timepoints') }}
    where {{ rebuilt }}

)

select
    coalesce(expected.participant_id, spine.participant_id) as participant_id,
    coalesce(expected.timepoint, spine.timepoint) as timepoint
from expected
full outer join spine
    on
        expected.participant_id = spine.participant_id
        and expected.timepoint = spine.timepoint
where spine.participant_id is null or expected.participant_id is null
