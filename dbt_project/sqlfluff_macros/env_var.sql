{#- For sqlfluff only (not in dbt's macro-paths; dbt has its own env_var): the default, so linted
    SQL renders as dbt renders it with the variable unset (macro reference_date(): current_date). -#}
{% macro env_var(name, default='') -%}{{ default }}{%- endmacro %}
