{#- EPR extracts give dates as YYYY-MM-DD or UK DD/MM/YYYY (landing-zone contract 7,
    national-trial contract 3); ingestion has checked that every non-empty value is one of them. -#}

{% macro epr_date(column) -%}
    case
        when {{ column }} like '__/__/____'
            then cast(
                substring({{ column }}, 7, 4)
                || '-' || substring({{ column }}, 4, 2)
                || '-' || substring({{ column }}, 1, 2)
                as date
            )
        else cast({{ column }} as date)
    end
{%- endmacro %}

{% macro epr_date_format(column) -%}
    case
        when {{ column }} like '__/__/____' then 'DD/MM/YYYY'
        when {{ column }} is not null then 'YYYY-MM-DD'
    end
{%- endmacro %}
