-- The spine with every visit, status and score (int_participant_timepoints_assembled) and the
-- timepoint's status against the reference date, the one column that depends on it: a new
-- date rebuilds this table from the assembled rows (docs/architecture.md, "Site partitions").
{{ site_partitioned() }}

with

assembled as (

    select * from {{ ref('int_participant_timepoints_assembled') }}
    where {{ in_rebuilt_partitions() }}

)

select
    participant_id,
    timepoint,
    site,
    protocol,
    arm,
    timepoint_order,
    target_day,
    target_date,
    window_start_date,
    window_end_date,
    visit_date,
    study_day,
    is_in_window,
    {{ timepoint_status() }} as timepoint_status,
    wemwbs_status,
    wsas_status,
    csq8_status,
    eq5d5l_status,
    service_use_status,
    honos_status,
    qpr_status,
    sdmq9_status,
    sps_status,
    lsns6_status,
    wemwbs_total,
    swemwbs_raw,
    swemwbs_metric,
    wsas_total,
    csq8_total,
    eq5d_index_uk_2026,
    eq5d_index_england_2018,
    eq5d_vas,
    honos_total,
    honos_items_valid,
    honos_behaviour,
    honos_impairment,
    honos_symptoms,
    honos_social,
    honos_study_day,
    service_use_cost,
    qpr_total,
    sdmq9_score,
    sps_total,
    sps_attachment,
    sps_social_integration,
    sps_reassurance_of_worth,
    sps_reliable_alliance,
    sps_guidance,
    sps_opportunity_for_nurturance,
    lsns6_total,
    lsns6_family,
    lsns6_friends,
    lsns6_isolated

from assembled
