"""Synthetic input marts with the contract's columns, for testing and timing the analysis.

Built in DuckDB SQL from hashes of (seed, row, purpose), so the same arguments give the same
tables at any scale and thread count: 1,000,000 participants make ~30M outcome rows in seconds.
"""

import duckdb

from pod_pipeline.analysis.tables import flow_stages

# parameter, timepoints, mean, sd, minimum, maximum, meaningful-improvement threshold, higher better
PARAMETERS = [
    ("wemwbs_total", "baseline month_3 month_6", 40, 9, 14, 70, 3, True),
    ("swemwbs_metric", "baseline month_3 month_6", 20, 4, 7, 35, 3, True),
    ("wsas_total", "baseline month_3 month_6", 20, 8, 0, 40, None, False),
    ("csq8_total", "month_3 month_6", 24, 5, 8, 32, None, True),
    ("eq5d_index", "baseline month_3 month_6", 0.6, 0.2, -0.3, 1, None, True),
    ("eq5d_vas", "baseline month_3 month_6", 60, 20, 0, 100, None, True),
    ("honos_total", "baseline month_6", 12, 6, 0, 48, None, False),
    ("honos_behaviour", "baseline month_6", 2, 2, 0, 12, None, False),
    ("honos_impairment", "baseline month_6", 2, 1.5, 0, 8, None, False),
    ("honos_symptoms", "baseline month_6", 4, 2, 0, 12, None, False),
    ("honos_social", "baseline month_6", 4, 2.5, 0, 16, None, False),
]
INSTRUMENTS = ("wemwbs", "wsas", "csq8", "eq5d", "honos")
TIMEPOINT_DAYS = {"baseline": 0, "month_3": 91, "month_6": 182}


def _values(rows: list[tuple]) -> str:
    return ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)


def _literal(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def write_synthetic_marts(
    con: duckdb.DuckDBPyConnection,
    participants: int = 200,
    arms: tuple[str, ...] = ("POD", "TAU"),
    clusters: int | None = None,
    seed: int = 1,
) -> None:
    """Create the marts the analysis reads (and raw.load_ledger) filled with synthetic rows."""
    con.execute("create schema if not exists marts")
    con.execute("create schema if not exists raw")
    con.execute(f"""
        create or replace temp macro unif(k, purpose) as
            ((hash(k, purpose, {seed}) % 1000000007)::double + 0.5) / 1000000007.0;
        create or replace temp macro gauss(k, purpose) as
            sqrt(-2 * ln(unif(k, purpose || '1'))) * cos(2 * pi() * unif(k, purpose || '2'));
    """)
    arm_list = "[" + ", ".join(_literal(arm) for arm in arms) + "]"
    unit = f"(i % {clusters})" if clusters else "i"
    cluster_id = f"printf('C%03d', i % {clusters})" if clusters else "cast(null as varchar)"
    con.execute(f"""
        create or replace table marts.participants as
        select
            printf('P%07d', i) as participant_id,
            'S' || (i % 3 + 1) as site,
            {arm_list}[{unit} % {len(arms)} + 1] as arm,
            {cluster_id} as cluster_id,
            18 + (hash(i, 'age', {seed}) % 60)::integer as age_at_consent,
            ['female', 'male', 'other'][(hash(i, 'gender', {seed}) % 3)::integer + 1] as gender,
            'not_stated' as ethnic_category,
            date '2026-01-05' + (i % 300)::integer as consent_date,
            cast(null as date) as withdrawal_date,
            case when unif(i, 'withdrawn') < 0.04 then 'follow_up'
                 when unif(i, 'withdrawn') < 0.05 then 'died' end as withdrawal_type,
            unif(i, 'baseline_missing') > 0.03 as has_baseline,
            i,
            -- a cluster's shared effect on costs, so cluster resampling has something to find
            {f"gauss(i % {clusters}, 'cluster')" if clusters else "0.0"} as cluster_effect
        from range({participants}) as t(i)
    """)
    spec = _values([(p[0], p[1], *p[2:6], p[6], p[7]) for p in PARAMETERS])
    days = _values(list(TIMEPOINT_DAYS.items()))
    con.execute(f"""
        create or replace table marts.outcome_scores as
        with spec(parameter, timepoints, mu, sigma, lo, hi, threshold, higher_better) as (
            values {spec}
        ),
        schedule(timepoint, target_day) as (values {days}),
        drawn as (
            select
                p.participant_id, p.arm, p.site, s.parameter, d.timepoint,
                d.target_day + (hash(p.i, s.parameter, d.timepoint) % 21)::integer - 10
                    as study_day,
                s.threshold, s.lo, s.hi,
                round(greatest(s.lo, least(s.hi,
                    s.mu + s.sigma * (0.7 * gauss(p.i, s.parameter)
                                      + 0.7 * gauss(p.i, s.parameter || d.timepoint))
                    + (case when p.arm = 'POD' then 0.15 else 0.05 end) * s.sigma
                      * (d.target_day / 91.0) * (case when s.higher_better then 1 else -1 end)
                )), 2) as value,
                unif(p.i, s.parameter || d.timepoint || 'present') as presence
            from marts.participants as p
            cross join spec as s
            cross join schedule as d
            where list_contains(string_split(s.timepoints, ' '), d.timepoint)
        ),
        present as (
            select * exclude (presence),
                -- 2% of records are out of window and not the analysis record
                presence > 0.98 as is_out_of_window
            from drawn where presence > 0.10 or timepoint = 'baseline' and presence > 0.03
        )
        select
            cur.participant_id, cur.arm, cur.site, cur.parameter, cur.timepoint, cur.study_day,
            cast(cur.value as decimal(10, 3)) as value,
            cast(base.value as decimal(10, 3)) as baseline_value,
            cast(cur.value - base.value as decimal(10, 3)) as change_from_baseline,
            case when base.value <> 0 then (cur.value - base.value) / base.value * 100 end
                as percent_change_from_baseline,
            cur.timepoint = 'baseline' as is_baseline,
            not cur.is_out_of_window as is_analysis_record,
            not cur.is_out_of_window as is_in_window,
            case when cur.threshold is not null and cur.timepoint <> 'baseline'
                      and base.value is not null
                 then cur.value - base.value >= cur.threshold end as is_meaningful_improvement
        from present as cur
        left join present as base
            on base.participant_id = cur.participant_id and base.parameter = cur.parameter
            and base.timepoint = 'baseline' and not base.is_out_of_window
    """)
    con.execute(f"""
        create or replace table marts.carer_timepoints as
        with carers as (
            select p.participant_id, p.i, c.k as carer_number
            from marts.participants as p
            cross join range(2) as c(k)
            where c.k < (hash(p.i, 'carers', {seed}) % 3)
        )
        select
            participant_id, printf('K%d', carer_number + 1) as carer_id,
            (hash(i, carer_number, 'relationship') % 6)::integer + 1 as carer_relationship,
            timepoint,
            cast(greatest(0, least(100, 55 + 15 * gauss(i * 3 + carer_number, 'wb')
                + 8 * gauss(i * 3 + carer_number, 'wb' || timepoint))) as decimal(4, 1))
                as cws_wellbeing_score,
            case when unif(i * 3 + carer_number, 'sp' || timepoint) > 0.1 then
                cast(greatest(0, least(100, 60 + 15 * gauss(i * 3 + carer_number, 'sp')
                    + 8 * gauss(i * 3 + carer_number, 'sp' || timepoint))) as decimal(4, 1))
                end as cws_support_score
        from carers
        cross join (values ('baseline'), ('month_3'), ('month_6')) as t(timepoint)
        where unif(i * 3 + carer_number, 'carer' || timepoint) > 0.15
    """)
    con.execute("""
        create or replace table marts.cost_effectiveness as
        with utilities as (
            select *,
                least(1, 0.6 + 0.2 * gauss(i, 'u0')) as u0,
                least(1, 0.6 + 0.2 * gauss(i, 'u3') + case when arm = 'POD' then 0.03 else 0 end)
                    as u3,
                least(1, 0.6 + 0.2 * gauss(i, 'u6') + case when arm = 'POD' then 0.05 else 0 end)
                    as u6,
                unif(i, 'qaly_complete') > 0.12 as has_complete_qaly,
                unif(i, 'cost_complete') > 0.10 as has_complete_cost,
                round(400 * exp(0.8 * gauss(i, 'c0')), 2) as c0,
                round(500 * exp(0.8 * gauss(i, 'c3') + 0.6 * cluster_effect)
                      * case when arm = 'POD' then 1.3 else 1 end, 2) as c3,
                round(450 * exp(0.8 * gauss(i, 'c6') + 0.6 * cluster_effect), 2) as c6
            from marts.participants
        )
        select
            participant_id, arm, site, cluster_id, age_at_consent, gender,
            u0 as utility_baseline,
            case when has_complete_qaly then u3 end as utility_month_3,
            u6 as utility_month_6,
            cast(case when has_complete_qaly then 0.125 * u0 + 0.25 * u3 + 0.125 * u6 end
                as decimal(8, 6)) as qaly,
            c0 as cost_baseline_period,
            case when has_complete_cost then c3 end as cost_month_3_period,
            c6 as cost_month_6_period,
            cast(case when has_complete_cost then c3 + c6 end as decimal(12, 2)) as total_cost,
            has_complete_qaly, has_complete_cost,
            'uk_2026' as value_set, '2024/25' as price_year
        from utilities
    """)
    # One stage per timepoint of the schedule (the synthetic participants follow pod_evaluation).
    stages = [stage for stage in flow_stages() if not stage.endswith("_assessed")
              or stage.removesuffix("_assessed") in TIMEPOINT_DAYS]
    assessed_counts = ", ".join(
        f"count(*) filter (where participant_id in (select participant_id from assessed "
        f"where timepoint = '{timepoint}')) as {timepoint}_assessed" for timepoint in TIMEPOINT_DAYS)
    con.execute(f"""
        create or replace table marts.participant_flow as
        with assessed as (
            select participant_id, timepoint from marts.outcome_scores
            where is_analysis_record and parameter = 'wemwbs_total'
        ),
        counts as (
            select arm,
                count(*) as consented,
                {assessed_counts},
                count(*) filter (where withdrawal_type = 'follow_up') as withdrawn,
                count(*) filter (where withdrawal_type = 'died') as died
            from marts.participants group by arm
        )
        select arm, stage, n
        from (unpivot counts on {", ".join(stages)} into name stage value n)
        join (select stage, row_number() over () as position
              from (values {_values([(stage,) for stage in stages])}) as s(stage))
            using (stage)
        order by arm, position
    """)
    con.execute(f"""
        create or replace table marts.completeness as
        with grid as (
            select p.site, p.arm, t.timepoint, s.instrument,
                unif(p.i, t.timepoint || s.instrument) as draw
            from marts.participants as p
            cross join (values ('baseline'), ('month_3'), ('month_6')) as t(timepoint)
            cross join (values {_values([(name,) for name in INSTRUMENTS])}) as s(instrument)
            where not (s.instrument = 'csq8' and t.timepoint = 'baseline')
              and not (s.instrument = 'honos' and t.timepoint = 'month_3')
        )
        select site, arm, timepoint, instrument,
            count(*) as expected,
            count(*) filter (where draw > 0.12) as received,
            count(*) filter (where draw > 0.15) as complete,
            count(*) filter (where draw > 0.14) as scored,
            cast(round(100.0 * count(*) filter (where draw > 0.14) / count(*), 1)
                as decimal(4, 1)) as pct_scored
        from grid group by all order by all
    """)
    con.execute("""
        create or replace table raw.load_ledger as
        select
            row_number() over (order by site, export_id, file) as entry_id, site, export_id,
            file, sha256(site || export_id || file) as sha256,
            case when file = 'manifest.json' then 'accepted' else 'loaded' end as status,
            case when file <> 'manifest.json' then 100 end as rows_read,
            case when file <> 'manifest.json' then 98 end as rows_loaded,
            case when file <> 'manifest.json' then 2 end as rows_quarantined,
            cast(null as varchar) as error,
            timestamp '2026-07-01 09:00:00' as loaded_at
        from (values ('S1'), ('S2'), ('S3')) as s(site)
        cross join (values ('2026-06-30T120000'), ('2026-07-01T120000')) as e(export_id)
        cross join (values ('manifest.json'), ('register.csv'), ('redcap_records.csv'),
                           ('honos.csv')) as f(file)
    """)
    con.execute("""
        create or replace table marts.time_to_relapse as
        with draws as (
            select *,
                unif(i, 'epr') > 0.05 as is_followed_in_epr,
                -- exponential days to relapse, a longer mean under POD, and a follow-up that ends
                -- at the data cut (241 to 540 days after consent)
                ceil(-ln(unif(i, 'relapse')) * case when arm = 'POD' then 500 else 350 end
                     * exp(0.3 * cluster_effect)) as latent_days,
                least(730, date '2027-06-30' - consent_date) as followed_days
            from marts.participants
        )
        select
            participant_id, site, arm, cluster_id, 'trial' as protocol, is_followed_in_epr,
            consent_date,
            case when is_followed_in_epr then cast(least(latent_days, followed_days) as integer)
                end as time_days,
            case when is_followed_in_epr then cast(latent_days <= followed_days as integer)
                end as is_relapse
        from draws
    """)
    con.execute("alter table marts.participants drop column i")
    con.execute("alter table marts.participants drop column cluster_effect")
