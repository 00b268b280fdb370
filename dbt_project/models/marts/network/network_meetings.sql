{{ site_partitioned() }}

with

meetings as (

    select * from {{ ref('stg_pod_team__network_meetings') }}
    where {{ in_rebuilt_partitions() }}

),

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

scored as (

    select
        meetings.*,
        participants.arm,
        {{ dbt.datediff('participants.consent_date', 'meetings.meeting_date', 'day') }}
            as study_day,
        {{ count_not_null(key_element_columns(), 'meetings') }} as key_elements_recorded,
        {{ sum_of(key_element_columns(), 'meetings') }} as key_elements_score,
        meetings.family_members_present + meetings.other_network_members_present > 0
            as has_carer_present

    from meetings
    -- Drops the meetings of participants withdrawn with all_data.
    inner join participants
        on meetings.participant_id = participants.participant_id

)

select
    meeting_id,
    participant_id,
    site,
    arm,
    meeting_date,
    study_day,
    duration_minutes,
    has_service_user_present,
    family_members_present,
    other_network_members_present,
    clinicians_present,
    has_carer_present,
    has_peer_support_worker,
    key_elements_recorded,
    key_elements_score

from scored
