-- HoNOS ratings carry no study event: each is placed in the timepoint whose window holds its
-- study day, among the timepoints of the participant's protocol. Within a participant's window
-- the rating nearest the target day is the analysis record; ties go to the later rating (then
-- the later line of the extract).
{{ site_partitioned() }}

with

ratings as (

    select * from {{ ref('stg_epr__honos_ratings') }}
    where {{ in_rebuilt_partitions() }}

),

participants as (

    select
        participant_id,
        protocol,
        consent_date

    from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0 and {{ in_rebuilt_partitions() }}

),

visit_windows as (

    select
        protocol_timepoints.protocol,
        windows.timepoint,
        windows.target_day,
        windows.window_start_day,
        windows.window_end_day

    from {{ ref('protocol_timepoints') }} as protocol_timepoints
    inner join {{ ref('visit_windows') }} as windows
        on protocol_timepoints.timepoint = windows.timepoint

),

dated as (

    select
        ratings.*,
        participants.protocol,
        {{ dbt.datediff('participants.consent_date', 'ratings.assessment_date', 'day') }}
            as study_day

    from ratings
    inner join participants
        on ratings.participant_id = participants.participant_id

),

placed as (

    select
        dated.*,
        visit_windows.timepoint,
        visit_windows.target_day

    from dated
    left join visit_windows
        on
            dated.protocol = visit_windows.protocol
            and dated.study_day >= visit_windows.window_start_day
            and dated.study_day <= visit_windows.window_end_day

),

ranked as (

    select
        *,
        row_number() over (
            partition by participant_id, timepoint
            order by
                abs(study_day - target_day) asc,
                study_day desc,
                line_number desc,
                assessment_id desc
        ) as window_rank

    from placed

)

-- Without the lineage, which every batch changes: a participant's rows are rebuilt when what
-- they say changes (pod_pipeline/transform/partitions.py), so no row keeps what only a new batch
-- would change. The staging view keeps it.
select
    * exclude (export_id, source_file, line_number, loaded_at),
    timepoint is not null as is_in_window,
    timepoint is not null and window_rank = 1 as is_analysis_record

from ranked
