{#- Source codes that stand for a missing value, turned into typed nulls with a reason.
    REDCap missing-data codes may stand in any REDCap data field (landing-zone contract 5);
    HoNOS 9 means "not known" (contract 7, RCPsych glossary). -#}

{% macro redcap_value(column, value_type) -%}
    case
        when {{ column }} in ('UNK', 'NASK', 'ASKU', 'NA') then null
        {%- if value_type == 'integer' %}
        else cast({{ column }} as {{ dbt.type_int() }})
        {%- elif value_type == 'date' %}
        else cast({{ column }} as date)
        {%- else %}
        else {{ column }}
        {%- endif %}
    end
{%- endmacro %}

{% macro redcap_missing_reason(column) -%}
    case {{ column }}
        when 'UNK' then 'unknown'
        when 'NASK' then 'not_asked'
        when 'ASKU' then 'asked_unknown'
        when 'NA' then 'not_applicable'
    end
{%- endmacro %}

{% macro honos_value(column) -%}
    case when {{ column }} = '9' then null else cast({{ column }} as {{ dbt.type_int() }}) end
{%- endmacro %}

{% macro honos_missing_reason(column) -%}
    case when {{ column }} = '9' then 'not_known' end
{%- endmacro %}
