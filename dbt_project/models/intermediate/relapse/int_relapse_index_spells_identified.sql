-- Each participant's spells read against their consent date (national-trial contract 4.2, 4.3,
-- 4.6): the index spell (the one containing consent, else the last one that ended at most
-- index_lookback_days days before it), the relapse (the start of the first spell starting after
-- consent: never the index spell, which starts on or before consent) and the first crisis-team
-- re-referral (a crisis_team episode in a spell starting after consent).
{{ site_partitioned() }}

with

spells as (

    select * from {{ ref('int_acute_care_spells_merged') }}
    where {{ in_rebuilt_partitions() }}

),

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

conventions as (

    select max(case when parameter = 'index_lookback_days' then value end) as index_lookback_days
    from {{ ref('relapse_conventions') }}

),

classified as (

    select
        spells.*,
        participants.consent_date,
        case
            when
                spells.spell_start_date <= participants.consent_date
                and spells.spell_end_date >= participants.consent_date
                then 1
            when
                spells.spell_end_date < participants.consent_date
                and {{ dbt.datediff('spells.spell_end_date', 'participants.consent_date', 'day') }}
                <= conventions.index_lookback_days
                then 2
        end as index_preference,
        spells.spell_start_date > participants.consent_date as starts_after_consent

    from spells
    inner join participants
        on spells.participant_id = participants.participant_id
    cross join conventions

),

ranked as (

    select
        *,
        case
            when index_preference is not null
                then row_number() over (
                    partition by participant_id, index_preference is null
                    order by index_preference asc, spell_end_date desc
                )
        end as index_rank,
        case
            when starts_after_consent
                then row_number() over (
                    partition by participant_id, starts_after_consent
                    order by spell_start_date
                )
        end as relapse_rank

    from classified

)

select
    participant_id,
    max(case when index_rank = 1 then spell_start_date end) as index_spell_start_date,
    max(case when index_rank = 1 then spell_end_date end) as index_spell_end_date,
    max(case when relapse_rank = 1 then spell_start_date end) as relapse_date,
    max(case when relapse_rank = 1 then first_episode_type end) as relapse_type,
    min(
        case when starts_after_consent then first_crisis_team_start_date end
    ) as first_crisis_rereferral_date

from ranked
group by participant_id
