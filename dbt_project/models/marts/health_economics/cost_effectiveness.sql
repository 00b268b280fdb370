-- The health economist's input, one row per participant: utilities under the reference-case
-- value set, the QALY (int_qalys_calculated), service-use costs per 3-month period at one price
-- year, completeness flags and the pattern of missing components for multiple imputation.
{{ site_partitioned() }}

with

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

reference_scale as (

    select scale from {{ ref('instrument_scales') }}
    where scoring_method = 'value_set' and value_set = '{{ var("value_set") }}'

),

selected as (

    select * from {{ ref('int_timepoint_scores_selected') }}
    where {{ in_rebuilt_partitions() }}

),

qalys as (

    select * from {{ ref('int_qalys_calculated') }}
    where {{ in_rebuilt_partitions() }}

),

costed_items as (

    select * from {{ ref('int_service_use_items_costed') }}
    where {{ in_rebuilt_partitions() }}

),

utilities as (

    select
        selected.participant_id,
        max(case when selected.timepoint = 'baseline' then selected.score end)
            as utility_baseline,
        max(case when selected.timepoint = 'month_3' then selected.score end)
            as utility_month_3,
        max(case when selected.timepoint = 'month_6' then selected.score end)
            as utility_month_6

    from selected
    inner join reference_scale
        on selected.scale = reference_scale.scale
    group by selected.participant_id

),

costs as (

    select
        participant_id,
        max(case when timepoint = 'baseline' then score end) as cost_baseline_period,
        max(case when timepoint = 'month_3' then score end) as cost_month_3_period,
        max(case when timepoint = 'month_6' then score end) as cost_month_6_period

    from selected
    where scale = 'service_use_cost'
    group by participant_id

),

price_year_gaps as (

    select participant_id
    from costed_items
    where has_price_year_gap and quantity > 0
    group by participant_id

),

combined as (

    select
        participants.participant_id,
        participants.arm,
        participants.site,
        participants.cluster_id,
        participants.age_at_consent,
        participants.gender,
        participants.withdrawal_type,
        utilities.utility_baseline,
        utilities.utility_month_3,
        utilities.utility_month_6,
        qalys.qaly,
        qalys.qaly_days,
        qalys.has_target_day_fallback,
        costs.cost_baseline_period,
        costs.cost_month_3_period,
        costs.cost_month_6_period,
        costs.cost_month_3_period + costs.cost_month_6_period as total_cost,
        price_year_gaps.participant_id is not null as has_price_year_gap

    from participants
    left join utilities
        on participants.participant_id = utilities.participant_id
    left join qalys
        on participants.participant_id = qalys.participant_id
    left join costs
        on participants.participant_id = costs.participant_id
    left join price_year_gaps
        on participants.participant_id = price_year_gaps.participant_id

),

flagged as (

    select
        *,
        qaly is not null as has_complete_qaly,
        total_cost is not null as has_complete_cost,
        rtrim(
            case when utility_baseline is null then 'utility_baseline,' else '' end
            || case when utility_month_3 is null then 'utility_month_3,' else '' end
            || case when utility_month_6 is null then 'utility_month_6,' else '' end
            || case when cost_baseline_period is null then 'cost_baseline_period,' else '' end
            || case when cost_month_3_period is null then 'cost_month_3_period,' else '' end
            || case when cost_month_6_period is null then 'cost_month_6_period,' else '' end,
            ','
        ) as missing_components

    from combined

)

select
    participant_id,
    arm,
    site,
    cluster_id,
    age_at_consent,
    gender,
    withdrawal_type,
    has_complete_qaly,
    has_complete_cost,
    has_price_year_gap,
    has_target_day_fallback,
    qaly_days,
    cast(utility_baseline as decimal(4, 3)) as utility_baseline,
    cast(utility_month_3 as decimal(4, 3)) as utility_month_3,
    cast(utility_month_6 as decimal(4, 3)) as utility_month_6,
    cast(qaly as decimal(8, 6)) as qaly,
    cast(cost_baseline_period as decimal(12, 2)) as cost_baseline_period,
    cast(cost_month_3_period as decimal(12, 2)) as cost_month_3_period,
    cast(cost_month_6_period as decimal(12, 2)) as cost_month_6_period,
    cast(total_cost as decimal(12, 2)) as total_cost,
    coalesce(nullif(missing_components, ''), 'none') as missing_pattern,
    '{{ var("value_set") }}' as value_set,
    '{{ var("price_year") }}' as price_year

from flagged
