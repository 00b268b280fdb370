with

scheduled as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}

),

visits as (

    select * from {{ ref('int_redcap_records_windowed') }}
    where not is_carer_response

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
        max(case when instrument = 'honos' then status end) as honos_status

    from {{ ref('int_scheduled_instruments_classified') }}
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
        max(case when scale = 'service_use_cost' then score end) as service_use_cost

    from {{ ref('int_timepoint_scores_selected') }}
    group by
        participant_id,
        timepoint

)

select
    scheduled.participant_id,
    scheduled.timepoint,
    scheduled.site,
    scheduled.arm,
    scheduled.timepoint_order,
    scheduled.target_day,
    scheduled.target_date,
    scheduled.window_start_date,
    scheduled.window_end_date,
    visits.visit_date,
    visits.study_day,
    visits.is_in_window,
    scheduled.timepoint_status,
    statuses.wemwbs_status,
    statuses.wsas_status,
    statuses.csq8_status,
    statuses.eq5d5l_status,
    statuses.service_use_status,
    statuses.honos_status,
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
    cast(scores.service_use_cost as decimal(12, 2)) as service_use_cost

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
