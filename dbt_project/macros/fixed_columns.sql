{#- Column lists fixed by the landing-zone contract (sections 7 and 8). -#}

{% macro honos_item_columns() -%}
    {%- set columns = [] -%}
    {%- for item_number in range(1, 13) -%}
        {%- do columns.append('honos_%02d' | format(item_number)) -%}
    {%- endfor -%}
    {{ return(columns) }}
{%- endmacro %}

{% macro key_element_columns() -%}
    {%- set columns = [] -%}
    {%- for element_number in range(1, 13) -%}
        {%- do columns.append('key_element_%02d' | format(element_number)) -%}
    {%- endfor -%}
    {{ return(columns) }}
{%- endmacro %}

{#- Number of the given columns that are not null, and their sum (null if any is null). -#}
{% macro count_not_null(columns, alias) -%}
    ({%- for column in columns -%}
        case when {{ alias }}.{{ column }} is not null then 1 else 0 end
        {%- if not loop.last %} + {% endif -%}
    {%- endfor -%})
{%- endmacro %}

{% macro sum_of(columns, alias) -%}
    ({%- for column in columns -%}
        {{ alias }}.{{ column }}
        {%- if not loop.last %} + {% endif -%}
    {%- endfor -%})
{%- endmacro %}
