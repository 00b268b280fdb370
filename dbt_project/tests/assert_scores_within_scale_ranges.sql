-- Every score lies within its scale's range (seeds/instrument_scales.csv min_score, max_score).
{{ config(meta={'dagster': {'ref': {'name': 'int_instrument_scales_scored'}}}) }}
select
    scored.collected_in,
    scored.response_id,
    scored.scale,
    scored.score
from {{ ref('int_instrument_scales_scored') }} as scored
inner join {{ ref('instrument_scales') }} as scales
    on scored.scale = scales.scale
where
    scored.score < scales.min_score
    or scored.score > scales.max_score
