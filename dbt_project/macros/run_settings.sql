{#- The run's settings, passed by the pipeline as --vars (docs/architecture.md). -#}

{#- Date against which timepoints are due: var reference_date (YYYY-MM-DD), else today. -#}
{% macro reference_date() -%}
    {%- set value = var('reference_date', none) -%}
    {%- if value -%}
        cast('{{ value }}' as date)
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}
