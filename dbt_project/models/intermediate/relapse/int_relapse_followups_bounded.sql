-- One row per participant (the spine's baseline row): whether the EPR follows them and, if so,
-- the end of their follow-up before any relapse (national-trial contract 4.4, 4.7). Follow-up
-- ends at the earliest of consent + followup_horizon_days, a follow_up or died withdrawal, the
-- site's data cut and the run's reference date; ties go to that order. A participant with no NHS
-- number, or at a site with no data cut, is not followed: no follow-up end.
{{ site_partitioned() }}

with

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

data_cuts as (

    select * from {{ ref('int_acute_care_exports_selected') }}

),

conventions as (

    select max(case when parameter = 'followup_horizon_days' then value end) as horizon_days
    from {{ ref('relapse_conventions') }}

),

limits as (

    select
        participants.participant_id,
        participants.site,
        participants.arm,
        participants.cluster_id,
        participants.protocol,
        participants.consent_date,
        data_cuts.data_cut_date,
        coalesce(participants.has_nhs_number, false)
        and data_cuts.data_cut_date is not null as is_followed_in_epr,
        cast(
            {{ dbt.dateadd(
                'day', 'conventions.horizon_days', 'participants.consent_date'
            ) }}
            as date
        ) as horizon_date,
        case
            when participants.withdrawal_type in ('follow_up', 'died')
                then participants.withdrawal_date
        end as withdrawal_date,
        participants.withdrawal_type,
        {{ reference_date() }} as reference_date

    from participants
    left join data_cuts
        on participants.site = data_cuts.site
    cross join conventions

),

earliest as (

    select
        *,
        least(
            horizon_date,
            coalesce(withdrawal_date, horizon_date),
            data_cut_date,
            reference_date
        ) as limit_date

    from limits
    where is_followed_in_epr

)

select
    limits.participant_id,
    limits.site,
    limits.arm,
    limits.cluster_id,
    limits.protocol,
    limits.consent_date,
    limits.is_followed_in_epr,
    limits.data_cut_date,
    -- Never before consent: a participant consented after the data cut has no follow-up yet.
    case
        when earliest.limit_date < earliest.consent_date then earliest.consent_date
        else earliest.limit_date
    end as followup_end_date,
    case
        when earliest.limit_date = earliest.horizon_date then 'followup_limit'
        when
            earliest.limit_date = earliest.withdrawal_date
            and earliest.withdrawal_type = 'died'
            then 'death'
        when earliest.limit_date = earliest.withdrawal_date then 'withdrawal'
        when earliest.limit_date = earliest.data_cut_date then 'data_cut'
        when earliest.limit_date is not null then 'reference_date'
    end as followup_end_reason

from limits
left join earliest
    on limits.participant_id = earliest.participant_id
