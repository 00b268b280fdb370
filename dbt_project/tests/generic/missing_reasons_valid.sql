{#- Every column named *_missing_reason holds one of the given reasons or null. Wide models have
    one such column per source field; they are read in a single scan. -#}
{% test missing_reasons_valid(model, values) %}

{%- set reason_columns = [] -%}
{%- if execute -%}
    {#- `model` is the relation, or a subquery of it when the test reads some rows only (a `where`,
        or a build of some sites: get_where_subquery), so the columns are those of a query. -#}
    {%- for column in get_columns_in_query('select * from ' ~ model) -%}
        {%- if column.endswith('_missing_reason') -%}
            {%- do reason_columns.append(column) -%}
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
