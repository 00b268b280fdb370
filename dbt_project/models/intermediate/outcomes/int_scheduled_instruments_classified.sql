-- Every participant x timepoint x instrument of expected_instruments, with its status:
--   complete      every status scale of the instrument scored, no item missing
--   partial       at least one status scale scored, but an item or a status scale missing
--   not_scored    something was received (an answer, a missing-data code, or an instrument
--                 quarantined at ingestion) but no status scale could be scored
--   missing       nothing received, and the instrument is expected at this timepoint
--   not_expected  nothing received, and the instrument is not scheduled at this timepoint or the
--                 timepoint is not expected after a follow_up / died withdrawal
-- Whatever was received is shown as received, even where it was not expected.
with

scheduled as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}

),

expected_instruments as (

    select * from {{ ref('expected_instruments') }}

),

instrument_scales as (

    select * from {{ ref('instrument_scales') }}

),

selected as (

    select * from {{ ref('int_timepoint_scores_selected') }}

),

status_scale_counts as (

    select
        instrument,
        count(*) as n_status_scales

    from instrument_scales
    where is_status_scale
    group by instrument

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
        expected_instruments.instrument,
        scheduled.site,
        scheduled.arm,
        scheduled.timepoint_order,
        scheduled.timepoint_status,
        scheduled.window_end_date,
        expected_instruments.is_expected,
        received.participant_id is not null as is_received,
        coalesce(received.is_quarantined, false) as is_quarantined,
        case
            when
                received.participant_id is null
                and (
                    not expected_instruments.is_expected
                    or scheduled.timepoint_status = 'not_expected'
                )
                then 'not_expected'
            when received.participant_id is null then 'missing'
            when received.n_status_scales_complete = status_scale_counts.n_status_scales
                then 'complete'
            when received.n_status_scales_scored > 0 then 'partial'
            else 'not_scored'
        end as status

    from scheduled
    inner join expected_instruments
        on scheduled.timepoint = expected_instruments.timepoint
    inner join status_scale_counts
        on expected_instruments.instrument = status_scale_counts.instrument
    left join received
        on
            scheduled.participant_id = received.participant_id
            and scheduled.timepoint = received.timepoint
            and expected_instruments.instrument = received.instrument

)

select * from classified
