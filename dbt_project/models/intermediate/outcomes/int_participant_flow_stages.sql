-- Participant x stage of the CONSORT-style flow the participant reached: consented (every
-- participant in the marts), <timepoint>_assessed (at least one of the timepoint's instruments
-- scored: status complete or partial), withdrawn (a follow_up withdrawal) or died.
-- participant_flow counts these rows by arm: a cohort-level count of a participant-level table,
-- so a build of some sites classifies only their rebuilt participants' stages
-- (docs/architecture.md, "Site partitions").
{{ site_partitioned() }}

with

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

classified as (

    select * from {{ ref('int_scheduled_instruments_classified') }}
    where {{ in_rebuilt_partitions() }}

)

select
    participant_id,
    arm,
    'consented' as stage

from participants

union all

select distinct
    participant_id,
    arm,
    timepoint || '_assessed' as stage

from classified
where status in ('complete', 'partial')

union all

select
    participant_id,
    arm,
    case withdrawal_type when 'follow_up' then 'withdrawn' else 'died' end as stage

from participants
where withdrawal_type in ('follow_up', 'died')
