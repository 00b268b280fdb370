-- Every participant x timepoint (of their protocol) x instrument of expected_instruments, with
-- its status; an instrument the protocol has no row for at the timepoint is not expected there:
--   complete      every status scale of the instrument scored, no item missing
--   partial       at least one status scale scored, but an item or a status scale missing
--   not_scored    something was received (an answer, a missing-data code, or an instrument
--                 quarantined at ingestion) but no status scale could be scored
--   missing       nothing received, and the instrument is expected at this timepoint
--   not_expected  nothing received, and the instrument is not scheduled at this timepoint or the
--                 timepoint is not expected after a follow_up / died withdrawal
-- Whatever was received is shown as received, even where it was not expected.
{{ site_partitioned() }}

with

scheduled as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where {{ in_rebuilt_partitions() }}

),

expected_instruments as (

    select * from {{ ref('expected_instruments') }}

),

instrument_scales as (

    select * from {{ ref('instrument_scales') }}

),

selected as {{ materialized_on_partial_build() }} (

    select * from {{ ref('int_timepoint_scores_selected') }}
    where {{ in_rebuilt_partitions() }}

),

planned_instruments as (

    select distinct instrument from expected_instruments

),

-- The instruments any protocol plans, each with its number of status scales.
status_scale_counts as (

    select
        instrument_scales.instrument,
        count(*) as n_status_scales

    from instrument_scales
    inner join planned_instruments
        on instrument_scales.instrument = planned_instruments.instrument
    where instrument_scales.is_status_scale
    group by instrument_scales.instrument

),

received as (

    select
        selected.participant_id,
        selected.timepoint,
        selected.instrument,
        max(case when selected.is_quarantined then 1 else 0 end) = 1 as is_quarantined,
        sum(
            case
                when instrument_scales.is_status_scale and selected.is_scorable then 1 else 0
            end
        ) as n_status_scales_scored,
        sum(
            case
                when
                    instrument_scales.is_status_scale
                    and selected.is_scorable
                    and selected.n_items_missing = 0
                    then 1
                else 0
            end
        ) as n_status_scales_complete

    from selected
    inner join instrument_scales
        on selected.scale = instrument_scales.scale
    group by
        selected.participant_id,
        selected.timepoint,
        selected.instrument

),

classified as (

    select
        scheduled.participant_id,
        scheduled.timepoint,
        status_scale_counts.instrument,
        scheduled.site,
        scheduled.arm,
        scheduled.protocol,
        scheduled.timepoint_order,
        scheduled.is_withdrawn_before_window,
        scheduled.window_end_date,
        coalesce(expected_instruments.is_expected, false) as is_expected,
        received.participant_id is not null as is_received,
        coalesce(received.is_quarantined, false) as is_quarantined,
        case
            when
                received.participant_id is null
                and (
                    not coalesce(expected_instruments.is_expected, false)
                    or scheduled.is_withdrawn_before_window
                )
                then 'not_expected'
            when received.participant_id is null then 'missing'
            when received.n_status_scales_complete = status_scale_counts.n_status_scales
                then 'complete'
            when received.n_status_scales_scored > 0 then 'partial'
            else 'not_scored'
        end as status

    from scheduled
    cross join status_scale_counts
    left join expected_instruments
        on
            scheduled.protocol = expected_instruments.protocol
            and scheduled.timepoint = expected_instruments.timepoint
            and status_scale_counts.instrument = expected_instruments.instrument
    left join received
        on
            scheduled.participant_id = received.participant_id
            and scheduled.timepoint = received.timepoint
            and status_scale_counts.instrument = received.instrument

)

select * from classified
