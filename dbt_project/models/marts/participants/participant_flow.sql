-- CONSORT-style counts per arm. Participants withdrawn with all_data are in no count (they are
-- not in the marts at all); "<timepoint>_assessed" counts participants with at least one
-- instrument of that timepoint scored (status complete or partial), for every timepoint of the
-- protocols followed. Each participant's stages are classified in int_participant_flow_stages, a
-- participant-level model a build of some sites rebuilds for their participants only; this
-- cohort-level table counts them.
with

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0

),

-- One row per participant x stage reached (int_participant_flow_stages).
stage_members as (

    select * from {{ ref('int_participant_flow_stages') }}

),

visit_windows as (

    select * from {{ ref('visit_windows') }}

),

-- The timepoints of the protocols the participants follow: a study with no national_trial site
-- has no month_12 or month_24 stage.
followed_timepoints as (

    select distinct timepoint from {{ ref('int_participant_timepoints_scheduled') }}

),

timepoint_count as (

    select count(*) as n_timepoints from visit_windows

),

stages as (

    select
        'consented' as stage,
        1 as stage_order

    union all

    select
        visit_windows.timepoint || '_assessed' as stage,
        2 + visit_windows.timepoint_order as stage_order

    from visit_windows
    inner join followed_timepoints
        on visit_windows.timepoint = followed_timepoints.timepoint

    union all

    select
        'withdrawn' as stage,
        2 + n_timepoints as stage_order

    from timepoint_count

    union all

    select
        'died' as stage,
        3 + n_timepoints as stage_order

    from timepoint_count

),

arms as (

    select distinct arm from participants

),

counts as (

    select
        arm,
        stage,
        count(*) as n

    from stage_members
    group by
        arm,
        stage

)

select
    arms.arm,
    stages.stage,
    stages.stage_order,
    coalesce(counts.n, 0) as n

from arms
cross join stages
left join counts
    on
        arms.arm = counts.arm
        and stages.stage = counts.stage
