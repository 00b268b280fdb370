{#- Every coded column of a model or seed holds only its codes: one test for all of them.
    A column's codes are its `config.meta.codes` in the YAML (a list, or a mapping of code to
    meaning), next to its description, and the data dictionary prints the same list
    (pod_pipeline/delivery/dictionary.py). `columns` limits the test to some of them (a column
    whose stray codes only warn gets a test of its own). Nulls pass, as in dbt's accepted_values.
    A failure returns one row per column and value not among its codes (column_name, value,
    n_rows), so dbt's count of failures is the number of such values; `dbt show --select <test>`
    lists them. -#}
{% test accepted_codes(model, columns=none) %}

{%- set coded = [] -%}
{#- The tested node, found in the graph (empty while dbt parses; the test is compiled when it
    runs) by its quoted relation: `model` is the relation, or a subquery of it when the test has
    a `where` (a build of some sites' rows tests those rows). -#}
{%- set tested = model | string -%}
{%- for node in (graph.nodes.values() if execute else [])
        if node.resource_type in ('model', 'seed')
        and ('"' ~ node.schema ~ '"."' ~ (node.alias or node.name) ~ '"') in tested -%}
    {%- for column in node.columns.values() -%}
        {%- set codes = column.config.meta.get('codes') or column.meta.get('codes') -%}
        {%- if codes and (columns is none or column.name in columns) -%}
            {%- do coded.append((column.name, codes.keys() | list if codes is mapping else codes)) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endfor -%}
{%- if execute -%}
    {%- set uncoded = (columns or []) | reject('in', coded | map(attribute=0) | list) | list -%}
    {%- if not coded or uncoded -%}
        {{ exceptions.raise_compiler_error("accepted_codes on " ~ model ~ ": no config.meta.codes for "
                                           ~ (uncoded | join(', ') if uncoded else 'any column')) }}
    {%- endif -%}
{%- endif %}

{% for column, codes in coded -%}
select
    '{{ column }}' as column_name,
    cast("{{ column }}" as varchar) as value,
    count(*) as n_rows
from {{ model }}
where "{{ column }}" not in (
    {%- for code in codes -%}
        {{ code if code is number else "'" ~ code ~ "'" }}{{ ', ' if not loop.last }}
    {%- endfor -%})
group by 1, 2
{% if not loop.last %}union all
{% endif -%}
{%- endfor %}

{% endtest %}
