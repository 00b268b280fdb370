-- QALY over the economic follow-up, baseline to month 6 (the marts contract), by the trapezium
-- rule over the actual study days of the assessments: sum of (day[k+1] - day[k]) / 365.25 x
-- (u[k] + u[k+1]) / 2, utilities under the reference-case value set (var value_set). Complete
-- case: a missing utility leaves the QALY missing. A utility without a visit date takes its
-- timepoint's target day, flagged. No discounting (the follow-up is shorter than a year).
{{ site_partitioned() }}

with

-- The economic follow-up is the default protocol's schedule for every participant: the national
-- trial's later timepoints (months 12 and 24) do not stretch it, nor leave its QALY missing.
economic_timepoints as (

    select protocol_timepoints.timepoint
    from {{ ref('protocol_timepoints') }} as protocol_timepoints
    inner join {{ ref('protocols') }} as protocols
        on protocol_timepoints.protocol = protocols.protocol
    where protocols.is_default

),

scheduled as (

    select scheduled.*
    from {{ ref('int_participant_timepoints_scheduled') }} as scheduled
    inner join economic_timepoints
        on scheduled.timepoint = economic_timepoints.timepoint
    where {{ in_rebuilt_partitions('scheduled.participant_id') }}

),

reference_scale as (

    select scale from {{ ref('instrument_scales') }}
    where scoring_method = 'value_set' and value_set = '{{ var("value_set") }}'

),

utilities as (

    select selected.*
    from {{ ref('int_timepoint_scores_selected') }} as selected
    inner join reference_scale
        on selected.scale = reference_scale.scale
    where {{ in_rebuilt_partitions('selected.participant_id') }}

),

points as (

    select
        scheduled.participant_id,
        scheduled.timepoint_order,
        utilities.score as utility,
        coalesce(utilities.study_day, scheduled.target_day) as qaly_day,
        utilities.score is not null and utilities.study_day is null as uses_target_day

    from scheduled
    left join utilities
        on
            scheduled.participant_id = utilities.participant_id
            and scheduled.timepoint = utilities.timepoint

),

segments as (

    select
        participant_id,
        utility,
        qaly_day,
        uses_target_day,
        (
            qaly_day - lag(qaly_day) over (partition by participant_id order by timepoint_order)
        )
        * (utility + lag(utility) over (partition by participant_id order by timepoint_order))
        / 2 as segment_area

    from points

)

select
    participant_id,
    count(utility) as n_utilities,
    count(*) as n_timepoints,
    max(case when utility is not null then qaly_day end)
    - min(case when utility is not null then qaly_day end) as qaly_days,
    max(case when uses_target_day then 1 else 0 end) = 1 as has_target_day_fallback,
    case
        when count(utility) = count(*)
            then cast(sum(segment_area) / 365.25 as {{ dbt.type_numeric() }})
    end as qaly

from segments
group by participant_id
