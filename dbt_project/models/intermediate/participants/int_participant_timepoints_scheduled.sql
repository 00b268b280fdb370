{{ site_partitioned() }}

with

participants as (

    select * from {{ ref('stg_register__participants') }}
    -- all_data: consent to use any of the participant's data was withdrawn. This model is the
    -- gate: every other intermediate model and mart reaches participants only through it.
    where
        (withdrawal_type is null or withdrawal_type <> 'all_data')
        and {{ in_rebuilt_partitions() }}

),

default_protocol as (

    select protocol from {{ ref('protocols') }}
    where is_default

),

site_protocols as (

    select * from {{ ref('site_protocols') }}

),

site_protocol_overrides as (

    {{ site_protocol_overrides() }}

),

-- Each participant's protocol: the run's setting for their site, else the seed's, else the
-- default protocol.
assigned as (

    select
        participants.participant_id,
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
        coalesce(
            site_protocol_overrides.protocol,
            site_protocols.protocol,
            default_protocol.protocol
        ) as protocol

    from participants
    left join site_protocol_overrides
        on participants.site = site_protocol_overrides.site
    left join site_protocols
        on participants.site = site_protocols.site
    cross join default_protocol

),

-- The timepoints each protocol schedules, with their windows.
visit_windows as (

    select
        windows.*,
        protocol_timepoints.protocol

    from {{ ref('protocol_timepoints') }} as protocol_timepoints
    inner join {{ ref('visit_windows') }} as windows
        on protocol_timepoints.timepoint = windows.timepoint

),

scheduled as (

    select
        participants.participant_id,
        visit_windows.timepoint,
        participants.site,
        participants.protocol,
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

    from assigned as participants
    inner join visit_windows
        on participants.protocol = visit_windows.protocol

),

classified as (

    select
        *,
        -- follow_up and died: nothing is expected once the withdrawal predates the window.
        coalesce(
            withdrawal_type in ('follow_up', 'died') and withdrawal_date < window_start_date,
            false
        ) as is_withdrawn_before_window

    from scheduled

)

select * from classified
