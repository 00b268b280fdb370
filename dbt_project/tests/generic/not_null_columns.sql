{#- None of the given columns holds a null: one test, and one scan of the model, for all of them.
    A failure returns one row per column holding nulls (column_name, null_rows), so dbt's count of
    failures is the number of such columns; `dbt show --select <test>` lists them. -#}
{% test not_null_columns(model, columns) %}

with nulls as (
    select
    {%- for column in columns %}
        count(*) filter (where {{ column }} is null) as "{{ column }}"{{ ',' if not loop.last }}
    {%- endfor %}
    from {{ model }}
)

{% for column in columns -%}
select
    '{{ column }}' as column_name,
    "{{ column }}" as null_rows
from nulls
where "{{ column }}" > 0
{% if not loop.last %}union all
{% endif -%}
{%- endfor %}

{% endtest %}
