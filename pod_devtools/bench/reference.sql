-- The benchmark's reference: participant_timepoints, outcome_scores and cost_effectiveness computed
-- in one plain DuckDB script straight from the current CSV files, with no orchestration, no checks,
-- no quarantine, no history and no lineage. It is what the machine can do for the core work, so the
-- pipeline's time is reported as a ratio to it. Placeholders in braces are file lists filled in by
-- pod_devtools/bench/reference.py; the scoring rules are those of shared/domain/scoring.md.

set threads = 2;
set memory_limit = '2GB';

create or replace table participants as
select study_id as participant_id, arm, cast(consent_date as date) as consent_date,
       cast(withdrawal_date as date) as withdrawal_date, withdrawal_type,
       regexp_extract(filename, '([^/]+)/[^/]+/register[.]csv$', 1) as site
from read_csv({register}, all_varchar = true, header = true, union_by_name = true, filename = true)
where coalesce(withdrawal_type, '') <> 'all_data';

create or replace table visits as
with records as (
    select * from read_csv({redcap}, all_varchar = true, header = true, union_by_name = true)
    where redcap_repeat_instrument is null
),
numeric as (
    select record_id as participant_id,
           regexp_replace(redcap_event_name, '_arm_[0-9]+$', '') as timepoint,
           cast(visit_date as date) as visit_date,
           {wemwbs_items},
           {wsas_items},
           {csq8_items},
           try_cast(eq5d5l_mo as int) as mo, try_cast(eq5d5l_sc as int) as sc, try_cast(eq5d5l_ua as int) as ua,
           try_cast(eq5d5l_pd as int) as pd, try_cast(eq5d5l_ad as int) as ad,
           try_cast(eq5d5l_vas as int) as eq5d_vas,
           {service_items}
    from records
)
select *,
    -- WEMWBS: sum, prorated when 1-2 of 14 items are missing.
    case when wemwbs_n >= 12 then round(wemwbs_sum * 14.0 / wemwbs_n, 1) end as wemwbs_total,
    case when swemwbs_n = 7 then swemwbs_sum end as swemwbs_raw,
    case when wsas_n >= 4 then round(wsas_sum * 5.0 / wsas_n, 1) end as wsas_total,
    case when csq8_n >= 7 then round(csq8_sum * 8.0 / csq8_n, 1) end as csq8_total
from (
    select *,
        {wemwbs_sum} as wemwbs_sum, {wemwbs_n} as wemwbs_n,
        {swemwbs_sum} as swemwbs_sum, {swemwbs_n} as swemwbs_n,
        {wsas_sum} as wsas_sum, {wsas_n} as wsas_n,
        {csq8_sum} as csq8_sum, {csq8_n} as csq8_n
    from numeric
);

create or replace table value_sets as
select * from read_csv('{seeds}/eq5d5l_value_sets.csv', header = true);

create or replace table unit_costs as
select * from read_csv('{seeds}/unit_costs.csv', header = true);

create or replace table swemwbs as
select raw_score, converted_score from read_csv('{seeds}/score_conversions.csv', header = true)
where scale = 'swemwbs_metric';

create or replace table honos as
with ratings as (
    select r.*, cast(coalesce(try_strptime(assessment_date, '%Y-%m-%d'),
                              try_strptime(assessment_date, '%d/%m/%Y')) as date) as rated_on
    from read_csv({honos}, all_varchar = true, header = true, union_by_name = true) r
),
linked as (
    select p.participant_id, p.consent_date, h.*
    from ratings h
    join (select study_id, replace(nhs_number, ' ', '') as nhs
          from read_csv({register}, all_varchar = true, header = true, union_by_name = true)
          where coalesce(withdrawal_type, '') <> 'all_data') reg
      on reg.nhs = replace(h.nhs_number, ' ', '')
    join participants p on p.participant_id = reg.study_id
),
windowed as (
    select l.*, w.timepoint, w.target_day, date_diff('day', l.consent_date, l.rated_on) as study_day
    from linked l
    join (values ('baseline', 0, -30, 14), ('month_6', 182, 136, 273)) w(timepoint, target_day, lo, hi)
      on date_diff('day', l.consent_date, l.rated_on) between w.lo and w.hi
),
chosen as (
    select * from windowed
    qualify row_number() over (partition by participant_id, timepoint
                               order by abs(study_day - target_day), rated_on desc) = 1
)
select participant_id, timepoint, study_day,
       {honos_valid} as honos_items_valid,
       case when {honos_valid} >= 10 then {honos_sum} end as honos_total,
       {honos_subscales}
from chosen;

create or replace table participant_timepoints as
with protocols as (
    -- A site follows the protocol seeds/site_protocols.csv names, else the KMPT evaluation's.
    select p.participant_id, coalesce(sp.protocol, 'pod_evaluation') as protocol
    from participants p
    left join read_csv('{seeds}/site_protocols.csv', header = true) sp on sp.site = p.site
),
spine as (
    select p.*, w.timepoint, w.target_day, w.lo, w.hi
    from participants p
    join protocols using (participant_id)
    join (values ('baseline', 0, -30, 14), ('month_3', 91, 61, 135), ('month_6', 182, 136, 273),
                 ('month_12', 365, 274, 456), ('month_24', 730, 639, 821))
        w(timepoint, target_day, lo, hi)
        on w.timepoint in ('baseline', 'month_3', 'month_6') or protocols.protocol = 'national_trial'
),
valued as (
    select v.*,
        1 - ({eq5d_uk}) as eq5d_index_uk_2026,
        1 - ({eq5d_england}) as eq5d_index_england_2018,
        {service_cost} as service_use_cost
    from visits v
)
select s.participant_id, s.arm, s.timepoint, s.target_day, v.visit_date,
       date_diff('day', s.consent_date, v.visit_date) as study_day,
       date_diff('day', s.consent_date, v.visit_date) between s.lo and s.hi as is_in_window,
       case when s.withdrawal_type in ('follow_up', 'died') and s.withdrawal_date < s.consent_date + s.lo
            then 'not_expected'
            when s.consent_date + s.hi < date '{reference_date}' then 'due' else 'not_yet_due' end
           as timepoint_status,
       v.wemwbs_total, v.swemwbs_raw, c.converted_score as swemwbs_metric, v.wsas_total,
       case when s.timepoint <> 'baseline' then v.csq8_total end as csq8_total,
       v.eq5d_index_uk_2026, v.eq5d_index_england_2018, v.eq5d_vas,
       h.honos_total, h.honos_items_valid, h.honos_behaviour, h.honos_impairment, h.honos_symptoms,
       h.honos_social, v.service_use_cost
from spine s
left join valued v on v.participant_id = s.participant_id and v.timepoint = s.timepoint
left join swemwbs c on c.raw_score = v.swemwbs_raw
left join honos h on h.participant_id = s.participant_id and h.timepoint = s.timepoint;

create or replace table outcome_scores as
with long as (
    unpivot participant_timepoints
    on wemwbs_total, swemwbs_metric, wsas_total, csq8_total, eq5d_index_uk_2026, eq5d_vas,
       honos_total, honos_behaviour, honos_impairment, honos_symptoms, honos_social
    into name parameter value value
)
select l.participant_id, l.arm, l.parameter, l.timepoint, l.study_day, l.value,
       b.value as baseline_value, l.value - b.value as change_from_baseline,
       case when b.value <> 0 then (l.value - b.value) / b.value * 100 end as percent_change_from_baseline,
       l.timepoint = 'baseline' as is_baseline, l.is_in_window
from long l
left join long b on b.participant_id = l.participant_id and b.parameter = l.parameter
                and b.timepoint = 'baseline';

create or replace table cost_effectiveness as
with wide as (
    select participant_id, arm,
        max(case when timepoint = 'baseline' then eq5d_index_uk_2026 end) as utility_baseline,
        max(case when timepoint = 'month_3' then eq5d_index_uk_2026 end) as utility_month_3,
        max(case when timepoint = 'month_6' then eq5d_index_uk_2026 end) as utility_month_6,
        max(case when timepoint = 'baseline' then coalesce(study_day, 0) end) as day_baseline,
        max(case when timepoint = 'month_3' then coalesce(study_day, 91) end) as day_month_3,
        max(case when timepoint = 'month_6' then coalesce(study_day, 182) end) as day_month_6,
        max(case when timepoint = 'baseline' then service_use_cost end) as cost_baseline_period,
        max(case when timepoint = 'month_3' then service_use_cost end) as cost_month_3_period,
        max(case when timepoint = 'month_6' then service_use_cost end) as cost_month_6_period
    from participant_timepoints group by all
)
select *,
    (day_month_3 - day_baseline) / 365.25 * (utility_baseline + utility_month_3) / 2
    + (day_month_6 - day_month_3) / 365.25 * (utility_month_3 + utility_month_6) / 2 as qaly,
    cost_month_3_period + cost_month_6_period as total_cost
from wide;

select (select count(*) from participant_timepoints) as participant_timepoints,
       (select count(*) from outcome_scores) as outcome_scores,
       (select count(*) from cost_effectiveness) as cost_effectiveness;
