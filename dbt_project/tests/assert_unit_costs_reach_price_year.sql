-- Unit costs that cannot be brought to var price_year because the NHS Cost Inflation Index lacks
-- their price year or the target year. Warns rather than blocks: the costs stay unpriced and
-- flagged (has_price_year_gap) until the index rows are added to the seed.
{{ config(severity='warn', meta={'dagster': {'ref': {'name': 'unit_costs'}}}) }}

select
    unit_costs.service_item,
    unit_costs.price_year as source_price_year,
    '{{ var("price_year") }}' as price_year
from {{ ref('unit_costs') }} as unit_costs
left join {{ ref('nhs_cost_inflation_index') }} as source_index
    on unit_costs.price_year = source_index.price_year
left join {{ ref('nhs_cost_inflation_index') }} as target_index
    on target_index.price_year = '{{ var("price_year") }}'
where
    unit_costs.price_year <> '{{ var("price_year") }}'
    and (source_index.index_value is null or target_index.index_value is null)
