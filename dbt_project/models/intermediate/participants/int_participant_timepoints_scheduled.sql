with

participants as (

    select * from {{ ref('stg_register__participants') }}
    -- all_data: consent to use any of the participant's data was withdrawn. This model is the
    -- gate: every other intermediate model and mart reaches participants only through it.
    where withdrawal_type is null or withdrawal_type <> 'all_data'

),

visit_windows as (

    select * from {{ ref('visit_windows') }}

),

scheduled as (

    select
        participants.participant_id,
        visit_windows.timepoint,
        participants.site,
        participants.arm,
        participants.cluster_id,
        participants.gender,
        participants.ethnic_category,
        participants.age_at_consent,
        participants.has_nhs_number,
        participants.consent_date,
        participants.withdrawal_date,
        participants.withdrawal_type,
        visit_windows.timepoint_order,
        visit_windows.target_day,
        visit_windows.window_start_day,
        visit_windows.window_end_day,
        cast(
            {{ dbt.dateadd('day', 'visit_windows.target_day', 'participants.consent_date') }}
            as date
        ) as target_date,
        cast(
            {{ dbt.dateadd('day', 'visit_windows.window_start_day', 'participants.consent_date') }}
            as date
        ) as window_start_date,
        cast(
            {{ dbt.dateadd('day', 'visit_windows.window_end_day', 'participants.consent_date') }}
            as date
        ) as window_end_date

    from participants
    cross join visit_windows

),

classified as (

    select
        *,
        case
            -- follow_up and died: nothing is expected once the withdrawal predates the window.
            when
                withdrawal_type in ('follow_up', 'died')
                and withdrawal_date < window_start_date
                then 'not_expected'
            -- Due once the window (inclusive of its last day) has closed.
            when window_end_date < {{ reference_date() }} then 'due'
            else 'not_yet_due'
        end as timepoint_status

    from scheduled

)

select * from classified
