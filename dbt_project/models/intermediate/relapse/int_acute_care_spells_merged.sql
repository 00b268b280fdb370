-- Acute-care episodes of both types merged into spells (national-trial contract 4.1): an
-- episode that overlaps the spell so far, or starts at most var relapse_merge_days days after
-- it ended, extends it; an open episode ends at the site's data cut. Participants withdrawn with
-- all_data are left out (through the participant spine). The EPR's episode_id stays behind.
{{ site_partitioned() }}

with

episodes as (

    select * from {{ ref('stg_epr__acute_care_episodes') }}
    where {{ in_rebuilt_partitions() }}

),

data_cuts as (

    select * from {{ ref('int_acute_care_exports_selected') }}

),

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

bounded as (

    select
        episodes.participant_id,
        episodes.site,
        episodes.episode_type,
        episodes.start_date,
        coalesce(episodes.end_date, data_cuts.data_cut_date) as end_date,
        episodes.end_date is null as is_open

    from episodes
    inner join participants
        on episodes.participant_id = participants.participant_id
    left join data_cuts
        on episodes.site = data_cuts.site

),

ordered as (

    select
        *,
        max(end_date) over (
            partition by participant_id
            order by start_date, end_date, episode_type
            rows between unbounded preceding and 1 preceding
        ) as previous_end_date

    from bounded

),

flagged as (

    select
        *,
        case
            when previous_end_date is null then 1
            when
                {{ dbt.datediff('previous_end_date', 'start_date', 'day') }}
                > {{ var('relapse_merge_days') }}
                then 1
            else 0
        end as starts_spell

    from ordered

),

numbered as (

    select
        *,
        sum(starts_spell) over (
            partition by participant_id
            order by start_date, end_date, episode_type
            rows between unbounded preceding and current row
        ) as spell_number

    from flagged

),

dated as (

    select
        *,
        min(start_date) over (partition by participant_id, spell_number) as spell_start_date

    from numbered

)

select
    participant_id,
    spell_number,
    min(site) as site,
    min(spell_start_date) as spell_start_date,
    max(end_date) as spell_end_date,
    -- The type of the spell's first episode; an inpatient admission wins a tie on the same day.
    case
        when
            max(
                case
                    when episode_type = 'inpatient' and start_date = spell_start_date then 1
                    else 0
                end
            ) = 1
            then 'inpatient'
        else 'crisis_team'
    end as first_episode_type,
    min(case when episode_type = 'crisis_team' then start_date end) as first_crisis_team_start_date,
    count(*) as episode_count,
    max(case when is_open then 1 else 0 end) = 1 as has_open_episode

from dated
group by participant_id, spell_number
