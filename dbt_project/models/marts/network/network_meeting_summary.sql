-- Every site x arm with participants, including those without meetings (TAU: meetings 0).
with

participants as (

    select * from {{ ref('int_participant_timepoints_scheduled') }}
    where timepoint_order = 0

),

meetings as (

    select * from {{ ref('network_meetings') }}

),

site_arms as (

    select distinct
        site,
        arm

    from participants

),

summarised as (

    select
        site,
        arm,
        count(*) as meetings,
        count(distinct participant_id) as participants,
        sum(case when has_carer_present then 1 else 0 end) as meetings_with_carer,
        sum(case when has_peer_support_worker then 1 else 0 end)
            as meetings_with_peer_support_worker,
        avg(key_elements_score) as mean_key_elements_score

    from meetings
    group by
        site,
        arm

),

joined as (

    select
        site_arms.arm,
        site_arms.site,
        summarised.meetings_with_carer,
        summarised.meetings_with_peer_support_worker,
        summarised.mean_key_elements_score,
        coalesce(summarised.meetings, 0) as meetings,
        coalesce(summarised.participants, 0) as participants

    from site_arms
    left join summarised
        on
            site_arms.site = summarised.site
            and site_arms.arm = summarised.arm

)

select
    arm,
    site,
    meetings,
    participants,
    cast(
        round(100.0 * meetings_with_carer / nullif(meetings, 0), 1) as decimal(4, 1)
    ) as pct_with_carer,
    cast(
        round(100.0 * meetings_with_peer_support_worker / nullif(meetings, 0), 1)
        as decimal(4, 1)
    ) as pct_with_peer_support_worker,
    cast(round(mean_key_elements_score, 2) as decimal(5, 2)) as mean_key_elements_score

from joined
