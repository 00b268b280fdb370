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

{#- The sites the run assigns a protocol, overriding seeds/site_protocols.csv: var site_protocols,
    `site=protocol` pairs separated by commas (setting POD_SITE_PROTOCOLS), as a query of
    (site, protocol) rows; no rows when the var is empty. -#}
{% macro site_protocol_overrides() -%}
    {%- set pairs = [] -%}
    {%- for entry in (var('site_protocols', '') or '').split(',') if entry.strip() -%}
        {%- set parts = entry.split('=') -%}
        {%- do pairs.append((parts[0] | trim | replace("'", "''"), parts[1] | trim | replace("'", "''"))) -%}
    {%- endfor -%}
    {%- if pairs -%}
        select site, protocol from (
            values
            {%- for site, protocol in pairs %}
            ('{{ site }}', '{{ protocol }}'){{ ',' if not loop.last }}
            {%- endfor %}
        ) as overrides (site, protocol)
    {%- else -%}
        select
            cast(null as {{ dbt.type_string() }}) as site,
            cast(null as {{ dbt.type_string() }}) as protocol
        where 1 = 0
    {%- endif -%}
{%- endmacro %}
