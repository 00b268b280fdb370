-- participant_timepoints but its timepoint_status, which depends on the reference date: every
-- other column is built here, by site, so that a new date rebuilds the mart from these rows
-- alone. is_withdrawn_before_window stands where the mart shows the status.
{{ site_partitioned() }}

with

scheduled as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where {{ in_rebuilt_partitions() }}

),

visits as (

    select * from {{ ref('int_redcap_records_windowed') }}
    where not is_carer_response and {{ in_rebuilt_partitions() }}

),

statuses as (

    select
        participant_id,
        timepoint,
        max(case when instrument = 'wemwbs' then status end) as wemwbs_status,
        max(case when instrument = 'wsas' then status end) as wsas_status,
        max(case when instrument = 'csq8' then status end) as csq8_status,
        max(case when instrument = 'eq5d5l' then status end) as eq5d5l_status,
        max(case when instrument = 'service_use' then status end) as service_use_status,
        max(case when instrument = 'honos' then status end) as honos_status,
        max(case when instrument = 'qpr' then status end) as qpr_status,
        max(case when instrument = 'sdmq9' then status end) as sdmq9_status,
        max(case when instrument = 'sps' then status end) as sps_status,
        max(case when instrument = 'lsns6' then status end) as lsns6_status

    from {{ ref('int_scheduled_instruments_classified') }}
    where {{ in_rebuilt_partitions() }}
    group by
        participant_id,
        timepoint

),

scores as (

    select
        participant_id,
        timepoint,
        max(case when scale = 'wemwbs_total' then score end) as wemwbs_total,
        max(case when scale = 'swemwbs_raw' then score end) as swemwbs_raw,
        max(case when scale = 'swemwbs_metric' then score end) as swemwbs_metric,
        max(case when scale = 'wsas_total' then score end) as wsas_total,
        max(case when scale = 'csq8_total' then score end) as csq8_total,
        max(case when scale = 'eq5d_index_uk_2026' then score end) as eq5d_index_uk_2026,
        max(case when scale = 'eq5d_index_england_2018' then score end)
            as eq5d_index_england_2018,
        max(case when scale = 'eq5d_vas' then score end) as eq5d_vas,
        max(case when scale = 'honos_total' then score end) as honos_total,
        max(case when scale = 'honos_total' then n_items_answered end) as honos_items_valid,
        max(case when scale = 'honos_behaviour' then score end) as honos_behaviour,
        max(case when scale = 'honos_impairment' then score end) as honos_impairment,
        max(case when scale = 'honos_symptoms' then score end) as honos_symptoms,
        max(case when scale = 'honos_social' then score end) as honos_social,
        max(case when instrument = 'honos' then study_day end) as honos_study_day,
        max(case when scale = 'service_use_cost' then score end) as service_use_cost,
        max(case when scale = 'qpr_total' then score end) as qpr_total,
        max(case when scale = 'sdmq9_score' then score end) as sdmq9_score,
        max(case when scale = 'sps_total' then score end) as sps_total,
        max(case when scale = 'sps_attachment' then score end) as sps_attachment,
        max(case when scale = 'sps_social_integration' then score end) as sps_social_integration,
        max(case when scale = 'sps_reassurance_of_worth' then score end)
            as sps_reassurance_of_worth,
        max(case when scale = 'sps_reliable_alliance' then score end) as sps_reliable_alliance,
        max(case when scale = 'sps_guidance' then score end) as sps_guidance,
        max(case when scale = 'sps_opportunity_for_nurturance' then score end)
            as sps_opportunity_for_nurturance,
        max(case when scale = 'lsns6_total' then score end) as lsns6_total,
        max(case when scale = 'lsns6_family' then score end) as lsns6_family,
        max(case when scale = 'lsns6_friends' then score end) as lsns6_friends,
        max(case when scale = 'lsns6_isolated' then score end) as lsns6_isolated

    from {{ ref('int_timepoint_scores_selected') }}
    where {{ in_rebuilt_partitions() }}
    group by
        participant_id,
        timepoint

)

select
    scheduled.participant_id,
    scheduled.timepoint,
    scheduled.site,
    scheduled.protocol,
    scheduled.arm,
    scheduled.timepoint_order,
    scheduled.target_day,
    scheduled.target_date,
    scheduled.window_start_date,
    scheduled.window_end_date,
    visits.visit_date,
    visits.study_day,
    visits.is_in_window,
    scheduled.is_withdrawn_before_window,
    statuses.wemwbs_status,
    statuses.wsas_status,
    statuses.csq8_status,
    statuses.eq5d5l_status,
    statuses.service_use_status,
    statuses.honos_status,
    statuses.qpr_status,
    statuses.sdmq9_status,
    statuses.sps_status,
    statuses.lsns6_status,
    cast(scores.wemwbs_total as decimal(4, 1)) as wemwbs_total,
    cast(scores.swemwbs_raw as {{ dbt.type_int() }}) as swemwbs_raw,
    cast(scores.swemwbs_metric as decimal(4, 2)) as swemwbs_metric,
    cast(scores.wsas_total as decimal(4, 1)) as wsas_total,
    cast(scores.csq8_total as decimal(4, 1)) as csq8_total,
    cast(scores.eq5d_index_uk_2026 as decimal(4, 3)) as eq5d_index_uk_2026,
    cast(scores.eq5d_index_england_2018 as decimal(4, 3)) as eq5d_index_england_2018,
    cast(scores.eq5d_vas as {{ dbt.type_int() }}) as eq5d_vas,
    cast(scores.honos_total as {{ dbt.type_int() }}) as honos_total,
    cast(scores.honos_items_valid as {{ dbt.type_int() }}) as honos_items_valid,
    cast(scores.honos_behaviour as {{ dbt.type_int() }}) as honos_behaviour,
    cast(scores.honos_impairment as {{ dbt.type_int() }}) as honos_impairment,
    cast(scores.honos_symptoms as {{ dbt.type_int() }}) as honos_symptoms,
    cast(scores.honos_social as {{ dbt.type_int() }}) as honos_social,
    scores.honos_study_day,
    cast(scores.service_use_cost as decimal(12, 2)) as service_use_cost,
    cast(scores.qpr_total as decimal(3, 1)) as qpr_total,
    cast(scores.sdmq9_score as decimal(4, 1)) as sdmq9_score,
    cast(scores.sps_total as {{ dbt.type_int() }}) as sps_total,
    cast(scores.sps_attachment as {{ dbt.type_int() }}) as sps_attachment,
    cast(scores.sps_social_integration as {{ dbt.type_int() }}) as sps_social_integration,
    cast(scores.sps_reassurance_of_worth as {{ dbt.type_int() }}) as sps_reassurance_of_worth,
    cast(scores.sps_reliable_alliance as {{ dbt.type_int() }}) as sps_reliable_alliance,
    cast(scores.sps_guidance as {{ dbt.type_int() }}) as sps_guidance,
    cast(scores.sps_opportunity_for_nurturance as {{ dbt.type_int() }})
        as sps_opportunity_for_nurturance,
    cast(scores.lsns6_total as {{ dbt.type_int() }}) as lsns6_total,
    cast(scores.lsns6_family as {{ dbt.type_int() }}) as lsns6_family,
    cast(scores.lsns6_friends as {{ dbt.type_int() }}) as lsns6_friends,
    scores.lsns6_isolated = 1 as lsns6_isolated

from scheduled
left join visits
    on
        scheduled.participant_id = visits.participant_id
        and scheduled.timepoint = visits.timepoint
left join statuses
    on
        scheduled.participant_id = statuses.participant_id
        and scheduled.timepoint = statuses.timepoint
left join scores
    on
        scheduled.participant_id = scores.participant_id
        and scheduled.timepoint = scores.timepoint
