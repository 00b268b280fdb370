{{ site_partitioned() }}

with

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

baseline_statuses as (

    select
        participant_id,
        max(case when status in ('complete', 'partial') then 1 else 0 end) = 1 as has_baseline

    from {{ ref('int_scheduled_instruments_classified') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}
    group by participant_id

)

select
    participants.participant_id,
    participants.site,
    participants.protocol,
    participants.arm,
    participants.cluster_id,
    participants.age_at_consent,
    participants.gender,
    participants.ethnic_category,
    participants.consent_date,
    participants.withdrawal_date,
    participants.withdrawal_type,
    participants.has_nhs_number,
    coalesce(baseline_statuses.has_baseline, false) as has_baseline

from participants
left join baseline_statuses
    on participants.participant_id = baseline_statuses.participant_id
