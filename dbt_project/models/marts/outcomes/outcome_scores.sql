-- Long outcome records (ADaM BDS-like). The baseline is the first scheduled timepoint's analysis
-- record; change and percent change are given for post-baseline records only, percent change is
-- null when the baseline is 0, and improvement is judged against the parameter's threshold in the
-- scale's better direction (null where the parameter has no threshold).
{{ site_partitioned() }}

with

selected as {{ materialized_on_partial_build() }} (

    select * from {{ ref('int_timepoint_scores_selected') }}
    where score is not null and {{ in_rebuilt_partitions() }}

),

scheduled as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where {{ in_rebuilt_partitions() }}

),

outcome_parameters as (

    select * from {{ ref('outcome_parameters') }}
    where value_set is null or value_set = '{{ var("value_set") }}'

),

instrument_scales as (

    select * from {{ ref('instrument_scales') }}

),

thresholds as (

    select * from {{ ref('meaningful_change_thresholds') }}

),

records as (

    select
        selected.participant_id,
        outcome_parameters.parameter,
        selected.timepoint,
        scheduled.arm,
        scheduled.site,
        scheduled.timepoint_order,
        outcome_parameters.parameter_order,
        outcome_parameters.value_set,
        selected.study_day,
        selected.is_in_window,
        selected.is_analysis_record,
        instrument_scales.higher_is_better,
        thresholds.threshold,
        cast(selected.score as decimal(10, 3)) as value,
        scheduled.timepoint_order = 0 and selected.is_analysis_record as is_baseline

    from selected
    inner join outcome_parameters
        on selected.scale = outcome_parameters.scale
    inner join scheduled
        on
            selected.participant_id = scheduled.participant_id
            and selected.timepoint = scheduled.timepoint
    inner join instrument_scales
        on selected.scale = instrument_scales.scale
    left join thresholds
        on outcome_parameters.parameter = thresholds.parameter

),

baselines as (

    select
        participant_id,
        parameter,
        value as baseline_value

    from records
    where is_baseline

),

baselined as (

    select
        records.*,
        baselines.baseline_value

    from records
    left join baselines
        on
            records.participant_id = baselines.participant_id
            and records.parameter = baselines.parameter

),

changed as (

    select
        *,
        case when timepoint_order > 0 then value - baseline_value end as change_from_baseline

    from baselined

)

select
    participant_id,
    arm,
    site,
    parameter,
    timepoint,
    timepoint_order,
    parameter_order,
    value_set,
    study_day,
    value,
    baseline_value,
    change_from_baseline,
    cast(
        100 * change_from_baseline / nullif(baseline_value, 0) as double precision
    ) as percent_change_from_baseline,
    is_baseline,
    is_analysis_record,
    is_in_window,
    case
        when threshold is null or change_from_baseline is null then null
        when higher_is_better then change_from_baseline >= threshold
        else change_from_baseline <= -threshold
    end as is_meaningful_improvement

from changed
