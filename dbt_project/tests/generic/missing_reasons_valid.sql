{#- Every column named *_missing_reason holds one of the given reasons or null. Wide models have
    one such column per source field; they are read in a single scan. -#}
{% test missing_reasons_valid(model, values) %}

{%- set reason_columns = [] -%}
{%- if execute -%}
    {%- for column in adapter.get_columns_in_relation(model) -%}
        {%- if column.name.endswith('_missing_reason') -%}
            {%- do reason_columns.append(column.name) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif %}

select *
from {{ model }}
where
    {%- for column in reason_columns %}
    ({{ column }} is not null and {{ column }} not in ('{{ values | join("', '") }}'))
    {%- if not loop.last %} or{% endif %}
    {%- else %}
    false
    {%- endfor %}

{% endtest %}
