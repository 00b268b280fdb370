{#- Each table's row count, written by the model's own build for the pipeline to read while dbt is
    still running (pod_pipeline/transform/assets.py): dbt holds the working database until it
    exits, so the pipeline cannot count the rows itself before then, and holding every event back
    until dbt exits cost about 3 s of a study-scale run. A post-hook of every model and seed
    (dbt_project.yml); it writes <POD_DBT_ROW_COUNTS>/<schema>.<alias>.count, one line, the count,
    inside the build's transaction, so the count is of the rows the build leaves. Nothing is
    written for a view, or when the variable is unset (dbt run by hand, the unit tests). -#}
{% macro record_row_count() -%}
    {%- if execute and model.config.materialized != 'view' -%}
        {%- set folder = env_var('POD_DBT_ROW_COUNTS', '') -%}
        {%- if folder -%}
            copy (select count(*) from {{ this }})
            to '{{ folder | replace("'", "''") }}/{{ this.schema }}.{{ this.identifier }}.count'
            (format csv, header false)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
