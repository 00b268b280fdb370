-- participant_flow's consented stage counts exactly the participants of the marts, per arm.
{{ config(meta={'dagster': {'ref': {'name': 'participant_flow'}}}) }}
with

participants as (

    select arm, count(*) as n
    from {{ ref('participants') }}
    group by arm

),

consented as (

    select arm, n
    from {{ ref('participant_flow') }}
    where stage = 'consented'

)

select
    coalesce(participants.arm, consented.arm) as arm,
    participants.n as participants,
    consented.n as consented
from participants
full outer join consented
    on participants.arm = consented.arm
where participants.n is null or consented.n is null or participants.n <> consented.n
