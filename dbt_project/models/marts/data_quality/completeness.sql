-- Counts over the due assessments: a participant's timepoint is due once its window has closed
-- (timepoint_status = 'due'); instruments not scheduled at a timepoint have no row.
with

classified as (

    select
        *,
        {{ timepoint_status() }} as timepoint_status

    from {{ ref('int_scheduled_instruments_classified') }}
    where is_expected

),

counted as (

    select
        site,
        arm,
        timepoint,
        instrument,
        min(timepoint_order) as timepoint_order,
        sum(case when timepoint_status = 'due' then 1 else 0 end) as expected,
        sum(
            case
                when
                    timepoint_status = 'due'
                    and status in ('complete', 'partial', 'not_scored')
                    then 1
                else 0
            end
        ) as received,
        sum(
            case when timepoint_status = 'due' and status = 'complete' then 1 else 0 end
        ) as complete,
        sum(
            case
                when timepoint_status = 'due' and status in ('complete', 'partial') then 1 else 0
            end
        ) as scored,
        sum(case when timepoint_status = 'not_yet_due' then 1 else 0 end) as not_yet_due,
        sum(case when timepoint_status = 'not_expected' then 1 else 0 end) as not_expected

    from classified
    group by
        site,
        arm,
        timepoint,
        instrument

)

select
    site,
    arm,
    timepoint,
    instrument,
    timepoint_order,
    expected,
    received,
    complete,
    scored,
    cast(round(100.0 * scored / nullif(expected, 0), 1) as decimal(4, 1)) as pct_scored,
    not_yet_due,
    not_expected

from counted
