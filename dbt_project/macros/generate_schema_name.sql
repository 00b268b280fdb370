{#- Custom schemas are used verbatim (seeds, staging, intermediate, marts), not prefixed with the
    target schema, so the pipeline, the quality checks and analysts find the same names in every
    environment. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
