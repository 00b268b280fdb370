{#- The run's settings, passed by the pipeline as --vars (docs/architecture.md), but for the
    reference date, which changes every day: as a var it would invalidate dbt's partial parse daily
    (a var change makes dbt parse the whole project again; an environment variable's change only
    re-parses the files that read it). -#}

{#- Date against which timepoints are due: env POD_DBT_REFERENCE_DATE (YYYY-MM-DD), else today. -#}
{% macro reference_date() -%}
    {%- set value = env_var('POD_DBT_REFERENCE_DATE', '') -%}
    {%- if value -%}
        cast('{{ value }}' as date)
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}

{#- A scheduled timepoint's status against the reference date (doc timepoint_status), from the
    schedule's columns is_withdrawn_before_window and window_end_date, qualified by `prefix` (e.g.
    'scheduled.'). Computed where it is read, never stored upstream: the schedule and the models
    built on it then do not depend on the reference date, so a daily refresh rebuilds only the
    models that call this macro or reference_date() and those built on them
    (pod_pipeline/transform/partitions.py). -#}
{% macro timepoint_status(prefix='') -%}
    case
        when {{ prefix }}is_withdrawn_before_window then 'not_expected'
        -- Due once the window (inclusive of its last day) has closed.
        when {{ prefix }}window_end_date < {{ reference_date() }} then 'due'
        else 'not_yet_due'
    end
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
