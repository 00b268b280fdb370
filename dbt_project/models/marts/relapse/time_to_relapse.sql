-- Time to relapse, the national trial's primary outcome, with its secondary EPR outcomes over the
-- same follow-up (national-trial contract sections 4 and 5). Participants withdrawn with all_data
-- are absent (the participant spine leaves them out).
{{ site_partitioned() }}

with

followups as (

    select * from {{ ref('int_relapse_followups_bounded') }}
    where {{ in_rebuilt_partitions() }}

),

index_spells as (

    select * from {{ ref('int_relapse_index_spells_identified') }}
    where {{ in_rebuilt_partitions() }}

),

inpatient_days as (

    select * from {{ ref('int_inpatient_days_counted') }}
    where {{ in_rebuilt_partitions() }}

),

unit_costs as (

    select * from {{ ref('unit_costs') }}
    where service_item = 'su_psychiatric_inpatient_nights'

),

inflation_index as (

    select * from {{ ref('nhs_cost_inflation_index') }}

),

-- The mental-health bed-day cost brought to the run's price year as service_use_costs does: a
-- price year the NHS Cost Inflation Index cannot bridge leaves the cost null.
bed_day_costs as (

    select
        round(
            unit_costs.unit_cost
            * case
                when unit_costs.price_year = '{{ var("price_year") }}' then 1
                else target_index.index_value / source_index.index_value
            end,
            2
        ) as unit_cost

    from unit_costs
    left join inflation_index as source_index
        on unit_costs.price_year = source_index.price_year
    left join inflation_index as target_index
        on target_index.price_year = '{{ var("price_year") }}'

),

outcomes as (

    select
        followups.*,
        index_spells.index_spell_start_date,
        index_spells.index_spell_end_date,
        index_spells.relapse_date,
        index_spells.relapse_type,
        index_spells.first_crisis_rereferral_date,
        coalesce(
            index_spells.relapse_date <= followups.followup_end_date, false
        ) as is_relapse_observed,
        coalesce(inpatient_days.psychiatric_inpatient_days, 0) as inpatient_days_counted

    from followups
    left join index_spells
        on followups.participant_id = index_spells.participant_id
    left join inpatient_days
        on followups.participant_id = inpatient_days.participant_id

)

select
    outcomes.participant_id,
    outcomes.site,
    outcomes.arm,
    outcomes.cluster_id,
    outcomes.protocol,
    outcomes.is_followed_in_epr,
    outcomes.consent_date,
    case
        when outcomes.is_followed_in_epr then outcomes.index_spell_start_date
    end as index_spell_start,
    case when outcomes.is_followed_in_epr then outcomes.index_spell_end_date end as index_spell_end,
    case when outcomes.is_followed_in_epr then outcomes.relapse_date end as relapse_date,
    case when outcomes.is_followed_in_epr then outcomes.relapse_type end as relapse_type,
    outcomes.followup_end_date,
    case
        when not outcomes.is_followed_in_epr then null
        when outcomes.is_relapse_observed then 'relapse'
        else outcomes.followup_end_reason
    end as censor_reason,
    case
        when not outcomes.is_followed_in_epr then null
        when outcomes.is_relapse_observed
            then {{ dbt.datediff('outcomes.consent_date', 'outcomes.relapse_date', 'day') }}
        else {{ dbt.datediff('outcomes.consent_date', 'outcomes.followup_end_date', 'day') }}
    end as time_days,
    case
        when not outcomes.is_followed_in_epr then null
        when outcomes.is_relapse_observed then 1
        else 0
    end as is_relapse,
    case
        when outcomes.is_followed_in_epr
            then coalesce(
                outcomes.first_crisis_rereferral_date <= outcomes.followup_end_date, false
            )
    end as has_crisis_rereferral,
    case
        when outcomes.is_followed_in_epr then outcomes.inpatient_days_counted
    end as psychiatric_inpatient_days,
    case
        when outcomes.is_followed_in_epr
            then {{ dbt.datediff('outcomes.consent_date', 'outcomes.followup_end_date', 'day') }}
    end as exposure_days,
    case
        when outcomes.is_followed_in_epr
            then cast(outcomes.inpatient_days_counted * bed_day_costs.unit_cost as decimal(12, 2))
    end as epr_inpatient_cost,
    '{{ var("price_year") }}' as price_year

from outcomes
left join bed_day_costs
    on true
