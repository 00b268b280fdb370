"""A synthetic warehouse shaped like the real one where the quality checks read it, at any size.

The marts the checks read (participants, participant_timepoints, outcome_scores, carer_timepoints,
completeness, missing_assessments) carry the dbt models' columns and types; network_meetings,
service_use_costs and quarantine carry theirs for the identifier scan. restricted.*_history and
audit.load_ledger carry the columns the drift and identifier checks read: two cumulative exports
per site, the newer adding the last month's participants and correcting ~2% of records. Every
value is clean, so a test breaks one rule at a time. Built in DuckDB SQL from hashes, like
analysis/synthetic.py: a million participants take about a minute.
"""

import datetime as dt

import duckdb

from pod_pipeline.settings import SEEDS_DIR

EXPORTS = ("20261101T060000Z", "20261120T060000Z")
INSTRUMENTS = ("wemwbs", "wsas", "csq8", "eq5d5l", "service_use", "honos", "qpr", "sdmq9", "sps", "lsns6")
SPS_SUBSCALES = ("attachment", "social_integration", "reassurance_of_worth", "reliable_alliance", "guidance",
                 "opportunity_for_nurturance")


def _seed(name: str) -> str:
    return f"read_csv('{SEEDS_DIR / f'{name}.csv'}', header = true)"


def _scored(instrument: str, value: str, sql_type: str, column: str) -> str:
    """A score column: the value when the instrument was scored (complete or partial), else null."""
    return (f"cast(case when {instrument}_status in ('complete', 'partial') then {value} end "
            f"as {sql_type}) as {column}")


def _status(instrument: str) -> str:
    """Not expected when not scheduled; missing until due; then mostly complete."""
    draw = f"unif(k, '{instrument}')"
    return (f"case when e_{instrument}.is_expected is not true then 'not_expected' "
            f"when timepoint_status <> 'due' then 'missing' "
            f"when {draw} < 0.03 then 'missing' when {draw} < 0.05 then 'not_scored' "
            f"when {draw} < 0.10 then 'partial' else 'complete' end as {instrument}_status")


def write_quality_warehouse(con: duckdb.DuckDBPyConnection, participants: int = 120,
                            sites: int = 2, reference_date: dt.date = dt.date(2026, 11, 25),
                            seed: int = 1) -> None:
    """Create the checked marts, restricted histories and load ledger, all passing every check."""
    for schema in ("marts", "restricted", "audit"):
        con.execute(f"create schema if not exists {schema}")
    con.execute(f"""
        create or replace temp macro unif(k, purpose) as
            ((hash(k, purpose, {seed}) % 1000003)::double + 0.5) / 1000003.0;
        create or replace temp macro pick(k, purpose, low, high) as
            low + floor(unif(k, purpose) * (high - low + 1));
    """)
    ref = f"date '{reference_date.isoformat()}'"
    con.execute(f"""
        create or replace table marts.participants as
        select printf('S%02d-%06d', i % {sites} + 1, i // {sites}) as participant_id,
            printf('s%02d', i % {sites} + 1) as site,
            'pod_evaluation' as protocol,
            case when unif(i, 'arm') < 0.5 then 'POD' else 'TAU' end as arm,
            cast(null as varchar) as cluster_id,
            cast(pick(i, 'age', 18, 80) as integer) as age_at_consent,
            ['1', '2', '9', 'X'][cast(pick(i, 'gender', 1, 4) as integer)] as gender,
            'A' as ethnic_category,
            {ref} - 700 + cast(pick(i, 'consent', 0, 680) as integer) as consent_date,
            cast(null as date) as withdrawal_date, cast(null as varchar) as withdrawal_type,
            true as has_nhs_number, true as has_baseline, i
        from range({participants}) as t(i)
    """)
    _write_participant_timepoints(con, ref)
    con.execute(f"""
        create or replace temp table _instrument_statuses as
        unpivot (select participant_id, timepoint, site, arm, timepoint_order, timepoint_status,
                        window_end_date, {", ".join(f"{i}_status" for i in INSTRUMENTS)}
                 from marts.participant_timepoints)
        on {", ".join(f"{i}_status" for i in INSTRUMENTS)}
        into name instrument value status;
        update _instrument_statuses set instrument = replace(instrument, '_status', '');
        update marts.participants as p set has_baseline = exists (
            select 1 from _instrument_statuses as s
            where s.participant_id = p.participant_id and s.timepoint = 'baseline'
                and s.status in ('complete', 'partial'));
    """)
    _write_outcome_marts(con, ref)
    _write_other_marts(con)
    _write_history(con, sites)
    con.execute("alter table marts.participants drop column i")


def _write_participant_timepoints(con: duckdb.DuckDBPyConnection, ref: str) -> None:
    expected = " ".join(
        f"left join {_seed('expected_instruments')} as e_{i} "
        f"on e_{i}.protocol = spine.protocol and e_{i}.timepoint = spine.timepoint "
        f"and e_{i}.instrument = '{i}'" for i in INSTRUMENTS)
    honos = [("honos_behaviour", 12), ("honos_impairment", 8), ("honos_symptoms", 12),
             ("honos_social", 16)]
    con.execute(f"""
        create or replace table marts.participant_timepoints as
        with spine as (
            select p.participant_id, w.timepoint, p.site, pt.protocol, p.arm,
                cast(w.timepoint_order as integer) as timepoint_order,
                cast(w.target_day as integer) as target_day,
                p.consent_date + cast(w.target_day as integer) as target_date,
                p.consent_date + cast(w.window_start_day as integer) as window_start_date,
                p.consent_date + cast(w.window_end_day as integer) as window_end_date,
                case when p.consent_date + cast(w.window_end_day as integer) < {ref} then 'due'
                    else 'not_yet_due' end as timepoint_status,
                p.i * 3 + w.timepoint_order as k
            from marts.participants as p cross join {_seed('visit_windows')} as w
            -- Every synthetic site follows the default protocol, pod_evaluation.
            inner join {_seed('protocol_timepoints')} as pt
                on pt.timepoint = w.timepoint and pt.protocol = 'pod_evaluation'
        ),
        statuses as (
            select spine.*, {", ".join(_status(i) for i in INSTRUMENTS)}
            from spine {expected}
        ),
        visited as (
            select statuses.*,
                case when wemwbs_status <> 'missing' or eq5d5l_status <> 'missing'
                    then target_date + cast(pick(k, 'day', -12, 12) as integer) end as visit_date,
                swemwbs.raw_score, swemwbs.converted_score
            from statuses
            left join {_seed('score_conversions')} as swemwbs
                on swemwbs.scale = 'swemwbs_metric'
                and swemwbs.raw_score = 7 + hash(k, 'swemwbs') % 29
        )
        select participant_id, timepoint, site, protocol, arm, timepoint_order, target_day, target_date,
            window_start_date, window_end_date, visit_date,
            cast(visit_date - target_date + target_day as bigint) as study_day,
            case when visit_date is not null
                then visit_date between window_start_date and window_end_date end as is_in_window,
            timepoint_status, {", ".join(f"{i}_status" for i in INSTRUMENTS)},
            {_scored("wemwbs", "pick(k, 'wemwbs', 14, 70)", "decimal(4,1)", "wemwbs_total")},
            {_scored("wemwbs", "raw_score", "integer", "swemwbs_raw")},
            {_scored("wemwbs", "converted_score", "decimal(4,2)", "swemwbs_metric")},
            {_scored("wsas", "pick(k, 'wsas', 0, 40)", "decimal(4,1)", "wsas_total")},
            {_scored("csq8", "pick(k, 'csq8', 8, 32)", "decimal(4,1)", "csq8_total")},
            {_scored("eq5d5l", "round(1 - unif(k, 'eq') * 1.2, 3)", "decimal(4,3)",
                     "eq5d_index_uk_2026")},
            {_scored("eq5d5l", "round(1 - unif(k, 'eq') * 0.9, 3)", "decimal(4,3)",
                     "eq5d_index_england_2018")},
            {_scored("eq5d5l", "pick(k, 'vas', 0, 100)", "integer", "eq5d_vas")},
            {_scored("honos", " + ".join(f"pick(k, '{c}', 0, {top})" for c, top in honos),
                     "integer", "honos_total")},
            {_scored("honos", "12", "integer", "honos_items_valid")},
            {", ".join(_scored("honos", f"pick(k, '{c}', 0, {top})", "integer", c)
                       for c, top in honos)},
            {_scored("honos", "target_day", "bigint", "honos_study_day")},
            {_scored("service_use", "pick(k, 'cost', 0, 250000) / 100", "decimal(12,2)",
                     "service_use_cost")},
            {_scored("qpr", "pick(k, 'qpr', 0, 60)", "decimal(3,1)", "qpr_total")},
            {_scored("sdmq9", "pick(k, 'sdmq9', 0, 100)", "decimal(4,1)", "sdmq9_score")},
            {_scored("sps", "pick(k, 'sps', 24, 96)", "integer", "sps_total")},
            {", ".join(_scored("sps", f"pick(k, 'sps_{c}', 4, 16)", "integer", f"sps_{c}")
                       for c in SPS_SUBSCALES)},
            {_scored("lsns6", "pick(k, 'lsns6', 0, 30)", "integer", "lsns6_total")},
            {_scored("lsns6", "pick(k, 'lsns6_family', 0, 15)", "integer", "lsns6_family")},
            {_scored("lsns6", "pick(k, 'lsns6_friends', 0, 15)", "integer", "lsns6_friends")},
            {_scored("lsns6", "pick(k, 'lsns6', 0, 30) < 12", "boolean", "lsns6_isolated")}
        from visited
    """)


def _write_outcome_marts(con: duckdb.DuckDBPyConnection, ref: str) -> None:
    parameters = ("wemwbs_total, swemwbs_metric, wsas_total, csq8_total, eq5d_index, eq5d_vas, "
                  "honos_total, honos_behaviour, honos_impairment, honos_symptoms, honos_social")
    con.execute(f"""
        create or replace table marts.outcome_scores as
        with long as (
            unpivot (select participant_id, arm, site, timepoint, timepoint_order, study_day,
                            is_in_window, eq5d_index_uk_2026 as eq5d_index,
                            {parameters.replace("eq5d_index, ", "")}
                     from marts.participant_timepoints)
            on {parameters} into name parameter value value
        ),
        valued as (
            select long.participant_id, long.arm, long.site, long.parameter, long.timepoint,
                long.timepoint_order, cast(p.parameter_order as integer) as parameter_order,
                case when long.parameter = 'eq5d_index' then 'uk_2026' end as value_set,
                long.study_day, long.is_in_window, cast(long.value as decimal(10,3)) as score
            from long
            inner join (select distinct parameter, parameter_order
                        from {_seed('outcome_parameters')}) as p
                on long.parameter = p.parameter
        )
        select v.participant_id, v.arm, v.site, v.parameter, v.timepoint, v.timepoint_order,
            v.parameter_order, v.value_set, v.study_day, v.score as value,
            b.score as baseline_value,
            case when v.timepoint <> 'baseline' then v.score - b.score end as change_from_baseline,
            case when v.timepoint <> 'baseline' and b.score <> 0
                then cast(100 * (v.score - b.score) / b.score as double) end
                as percent_change_from_baseline,
            v.timepoint = 'baseline' as is_baseline,
            coalesce(v.is_in_window, true) as is_analysis_record, v.is_in_window,
            cast(null as boolean) as is_meaningful_improvement
        from valued as v
        left join valued as b
            on b.participant_id = v.participant_id and b.parameter = v.parameter
            and b.timepoint = 'baseline'
    """)
    due = "timepoint_status = 'due'"
    con.execute(f"""
        create or replace table marts.completeness as
        select site, arm, timepoint, instrument,
            cast(min(timepoint_order) as integer) as timepoint_order,
            cast(count(*) filter (where {due}) as hugeint) as expected,
            cast(count(*) filter (where {due} and status <> 'missing') as hugeint) as received,
            cast(count(*) filter (where {due} and status = 'complete') as hugeint) as complete,
            cast(count(*) filter (where {due} and status in ('complete', 'partial')) as hugeint)
                as scored,
            cast(null as decimal(4,1)) as pct_scored,
            cast(count(*) filter (where timepoint_status = 'not_yet_due') as hugeint)
                as not_yet_due,
            cast(0 as hugeint) as not_expected
        from _instrument_statuses where status <> 'not_expected'
        group by site, arm, timepoint, instrument;
        update marts.completeness
            set pct_scored = cast(round(100.0 * scored / nullif(expected, 0), 1) as decimal(4,1));
        create or replace table marts.missing_assessments as
        select site, participant_id, timepoint, instrument, status,
            window_end_date as window_closed_date, arm, timepoint_order, false as is_quarantined,
            case when status = 'not_scored' then 'too_many_items_missing' else 'not_received' end
                as reason,
            cast({ref} - window_end_date as bigint) as days_since_window_closed
        from _instrument_statuses
        where {due} and status in ('missing', 'not_scored');
        create or replace table marts.carer_timepoints as
        select t.participant_id, 'C' || c.n as carer_id,
            cast(1 + hash(t.participant_id, c.n) % 6 as integer) as carer_relationship,
            t.timepoint, t.site, t.timepoint_order, cast(c.n as integer) as repeat_instance,
            cast(pick(hash(t.participant_id, t.timepoint, c.n), 'wb', 0, 1000) / 10
                as decimal(4,1)) as cws_wellbeing_score,
            cast(pick(hash(t.participant_id, t.timepoint, c.n), 'sp', 0, 1000) / 10
                as decimal(4,1)) as cws_support_score,
            32 as cws_wellbeing_items_answered, 15 as cws_support_items_answered,
            cast(null as integer) as zbi12_total
        from marts.participant_timepoints as t cross join (values (1), (2)) as c(n)
        where t.visit_date is not null and unif(hash(t.participant_id, c.n), 'carer') < 0.4 / c.n
    """)


def _write_other_marts(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"""
        create or replace table marts.network_meetings as
        select printf('%s-NM%07d', split_part(p.participant_id, '-', 1), p.i * 10 + m.n)
                as meeting_id,
            p.participant_id, p.site, p.arm,
            p.consent_date + cast(7 * m.n as integer) as meeting_date,
            cast(7 * m.n as bigint) as study_day, 60 as duration_minutes,
            true as has_service_user_present, 1 as family_members_present,
            0 as other_network_members_present, 2 as clinicians_present, true as has_carer_present,
            m.n % 2 = 0 as has_peer_support_worker, 12 as key_elements_recorded,
            cast(pick(p.i * 10 + m.n, 'key', 0, 24) as integer) as key_elements_score
        from marts.participants as p cross join range(1, 6) as m(n)
        where p.arm = 'POD' and m.n <= 1 + hash(p.i, 'meetings') % 5;
        create or replace table marts.service_use_costs as
        with used as (
            select t.participant_id, t.timepoint, u.service_item, t.site, t.arm,
                t.timepoint_order, u.unit, u.unit_cost, u.source, u.price_year,
                cast(hash(t.participant_id, t.timepoint, u.service_item) % 3 as integer) as quantity
            from marts.participant_timepoints as t cross join {_seed('unit_costs')} as u
            where t.service_use_status in ('complete', 'partial')
        )
        select participant_id, timepoint, service_item, site, arm, timepoint_order, quantity,
            cast(null as varchar) as quantity_missing_reason, unit,
            cast(unit_cost as decimal(12,2)) as unit_cost,
            cast(unit_cost * quantity as decimal(12,2)) as cost, '2024/25' as price_year,
            source as cost_source, cast(unit_cost as decimal(12,2)) as source_unit_cost,
            price_year as source_price_year, cast(1 as decimal(12,6)) as inflation_factor,
            false as has_price_year_gap
        from used;
        create or replace table marts.quarantine as
        select 's01' as site, '{EXPORTS[1]}' as export_id, 'honos.csv' as file,
            cast(7 as bigint) as line, 'assessment_date' as "column", 'invalid_date' as reason,
            'assessment_date is not a real date' as detail, 'row' as scope,
            cast(null as varchar) as instrument, true as is_current_export,
            timestamp '2026-11-20 07:00:00' as quarantined_at
    """)


def _write_history(con: duckdb.DuckDBPyConnection, sites: int) -> None:
    """Two exports per site: the older lacks the last month's participants; ~2% records differ."""
    older = "(e.n = 1 or p.consent_date <= date '2026-10-25')"
    exports = f"(values ('{EXPORTS[0]}', 0), ('{EXPORTS[1]}', 1)) as e(export_id, n)"
    changed = "e.n = 1 and unif(hash(k), 'changed') < 0.02"
    lineage = (f"p.site as _site, e.export_id as _export_id, 'loaded' as _status, "
               f"md5(k || case when {changed} then 'v2' else '' end) as _row_hash")
    timepoints = ("(select t.*, t.participant_id || t.timepoint as k "
                  "from marts.participant_timepoints as t) as t "
                  "inner join marts.participants as p on p.participant_id = t.participant_id")
    con.execute(f"""
        create or replace table restricted.register_history as
        select p.participant_id as study_id, cast(null as varchar) as nhs_number,
            strftime(p.consent_date - p.age_at_consent * 365 - 100, '%Y-%m-%d') as date_of_birth,
            {lineage}
        from (select *, participant_id as k from marts.participants) as p cross join {exports}
        where {older};
        create or replace table restricted.redcap_records_history as
        select t.participant_id as record_id,
            t.timepoint || '_arm_' || case when t.arm = 'POD' then 1 else 2 end
                as redcap_event_name,
            cast(null as varchar) as redcap_repeat_instrument,
            cast(null as varchar) as redcap_repeat_instance, {lineage}
        from {timepoints} cross join {exports}
        where t.visit_date is not null and {older};
        create or replace table restricted.honos_history as
        select 'HON' || md5(k) as assessment_id, md5(t.participant_id) as _pseudonym, {lineage}
        from {timepoints} cross join {exports}
        where t.honos_status in ('complete', 'partial') and {older};
        create or replace table restricted.network_meetings_history as
        select m.meeting_id, m.participant_id as study_id, {lineage}
        from (select *, meeting_id as k from marts.network_meetings) as m
        inner join marts.participants as p on p.participant_id = m.participant_id
        cross join {exports}
        where {older};
        create or replace table audit.load_ledger as
        select row_number() over (order by s.site, e.export_id, f.file) as entry_id, s.site,
            e.export_id, f.file, cast(null as varchar) as sha256, 'loaded' as status,
            cast(null as bigint) as rows_read, cast(null as bigint) as rows_loaded,
            cast(0 as bigint) as rows_quarantined, cast(null as varchar) as error,
            timestamp '2026-11-20 07:00:00' as loaded_at, cast(null as varchar) as run_id,
            '' as prev_hash, '' as entry_hash
        from (select printf('s%02d', n) as site from range(1, {sites} + 1) as r(n)) as s
        cross join {exports}
        cross join (values ('register.csv'), ('redcap_records.csv'), ('honos.csv'),
                           ('network_meetings.csv')) as f(file)
    """)
