-- Psychiatric inpatient days over each followed participant's follow-up (national-trial
-- contract 4.6): inpatient episodes (an open one ends at the site's data cut) clipped to
-- [consent_date, followup_end_date), overlapping stays merged so each day counts once. A stay
-- covers its admission day up to, not including, its discharge day (bed days are nights); the
-- follow-up end is treated like a discharge, so inpatient days never exceed exposure days.
{{ site_partitioned() }}

with

episodes as (

    select * from {{ ref('stg_epr__acute_care_episodes') }}
    where episode_type = 'inpatient' and {{ in_rebuilt_partitions() }}

),

data_cuts as (

    select * from {{ ref('int_acute_care_exports_selected') }}

),

followups as (

    select * from {{ ref('int_relapse_followups_bounded') }}
    where is_followed_in_epr and {{ in_rebuilt_partitions() }}

),

clipped as (

    select
        episodes.participant_id,
        case
            when episodes.start_date < followups.consent_date then followups.consent_date
            else episodes.start_date
        end as from_date,
        case
            when coalesce(episodes.end_date, data_cuts.data_cut_date) > followups.followup_end_date
                then followups.followup_end_date
            else coalesce(episodes.end_date, data_cuts.data_cut_date)
        end as to_date

    from episodes
    inner join followups
        on episodes.participant_id = followups.participant_id
    left join data_cuts
        on episodes.site = data_cuts.site

),

ordered as (

    select
        *,
        max(to_date) over (
            partition by participant_id
            order by from_date, to_date
            rows between unbounded preceding and 1 preceding
        ) as previous_to_date

    from clipped
    where from_date < to_date

),

numbered as (

    select
        *,
        sum(
            case when previous_to_date is null or from_date > previous_to_date then 1 else 0 end
        ) over (
            partition by participant_id
            order by from_date, to_date
            rows between unbounded preceding and current row
        ) as stay_number

    from ordered

),

stays as (

    select
        participant_id,
        stay_number,
        min(from_date) as from_date,
        max(to_date) as to_date

    from numbered
    group by participant_id, stay_number

)

select
    participant_id,
    sum({{ dbt.datediff('from_date', 'to_date', 'day') }}) as psychiatric_inpatient_days

from stays
group by participant_id
