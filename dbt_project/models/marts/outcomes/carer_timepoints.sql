-- Carer questionnaires: one row per carer (carer_id, stable within a participant) and timepoint.
-- Should a carer_id appear twice in one event, the lower repeat instance stands (a warn-level
-- test on int_redcap_records_windowed reports it); a row without carer_id is identified by its
-- repeat instance.
{{ site_partitioned() }}

with

carer_responses as (

    select * from {{ ref('int_redcap_records_windowed') }}
    where is_carer_response and {{ in_rebuilt_partitions() }}

),

carer_instruments as (

    select instrument from {{ ref('instruments') }}
    where respondent = 'carer'

),

carer_scores as (

    select
        scored.response_id,
        max(case when scored.scale = 'cws_wellbeing_score' then scored.score end)
            as cws_wellbeing_score,
        max(case when scored.scale = 'cws_support_score' then scored.score end)
            as cws_support_score,
        max(case when scored.scale = 'cws_wellbeing_score' then scored.n_items_answered end)
            as cws_wellbeing_items_answered,
        max(case when scored.scale = 'cws_support_score' then scored.n_items_answered end)
            as cws_support_items_answered,
        max(case when scored.scale = 'zbi12_total' then scored.score end) as zbi12_total

    from {{ ref('int_instrument_scales_scored') }} as scored
    inner join carer_instruments
        on scored.instrument = carer_instruments.instrument
    where scored.collected_in = 'redcap' and {{ in_rebuilt_partitions('scored.participant_id') }}
    group by scored.response_id

),

identified as (

    select
        *,
        coalesce(carer_id, 'instance-' || cast(repeat_instance as {{ dbt.type_string() }}))
            as carer_key

    from carer_responses

),

ranked as (

    select
        *,
        row_number() over (
            partition by participant_id, carer_key, timepoint
            order by repeat_instance
        ) as carer_rank

    from identified

)

select
    ranked.participant_id,
    ranked.carer_key as carer_id,
    ranked.carer_relationship,
    ranked.timepoint,
    ranked.site,
    ranked.timepoint_order,
    ranked.repeat_instance,
    cast(carer_scores.cws_wellbeing_score as decimal(4, 1)) as cws_wellbeing_score,
    cast(carer_scores.cws_support_score as decimal(4, 1)) as cws_support_score,
    coalesce(carer_scores.cws_wellbeing_items_answered, 0) as cws_wellbeing_items_answered,
    coalesce(carer_scores.cws_support_items_answered, 0) as cws_support_items_answered,
    cast(carer_scores.zbi12_total as {{ dbt.type_int() }}) as zbi12_total

from ranked
left join carer_scores
    on ranked.response_id = carer_scores.response_id
where ranked.carer_rank = 1
