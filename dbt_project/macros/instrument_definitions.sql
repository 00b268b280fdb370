{#- Instrument definitions, read from the seeds when a model is compiled. The SQL that turns a wide
    export into per-scale sums or per-item rows is generated from reference data, so adding an
    instrument means adding seed rows, not code. While dbt parses (execute is false) these return
    an empty list and the models render their placeholder row instead.

    The ref() calls come before the execute check so dbt records the seeds as parents. -#}

{#- Every REDCap field of seeds/instrument_items.csv: [{field_name, value_type}]. -#}
{% macro redcap_fields() %}
    {%- set instrument_items = ref('instrument_items') -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select field_name, value_type
        from {{ instrument_items }}
        order by instrument, item_number, field_name
    {%- endset -%}
    {%- set fields = [] -%}
    {%- for row in run_query(query).rows -%}
        {%- do fields.append({'field_name': row[0], 'value_type': row[1]}) -%}
    {%- endfor -%}
    {{ return(fields) }}
{% endmacro %}

{#- The scales of instruments collected in one system (instruments.collected_in: redcap, epr),
    optionally only those scored by the given methods, each with its items:
    [{instrument, scale, fields: [{field_name, is_reverse_scored, min_value, max_value}]}]. -#}
{% macro scale_definitions(collected_in, scoring_methods=none) %}
    {%- set instrument_scales = ref('instrument_scales') -%}
    {%- set scale_items = ref('scale_items') -%}
    {%- set instruments = ref('instruments') -%}
    {%- set instrument_items = ref('instrument_items') -%}
    {%- set honos_items = ref('honos_items') -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set query -%}
        select
            scales.instrument,
            scales.scale,
            items.field_name,
            items.is_reverse_scored,
            ranges.min_value,
            ranges.max_value
        from {{ instrument_scales }} as scales
        inner join {{ instruments }} as instruments
            on scales.instrument = instruments.instrument
        inner join {{ scale_items }} as items
            on scales.scale = items.scale
        left join (
            select field_name, min_value, max_value from {{ instrument_items }}
            union all
            select field_name, min_value, max_value from {{ honos_items }}
        ) as ranges
            on items.field_name = ranges.field_name
        where instruments.collected_in = '{{ collected_in }}'
        {%- if scoring_methods %}
            and scales.scoring_method in ('{{ scoring_methods | join("', '") }}')
        {%- endif %}
        order by scales.instrument, scales.scale, items.field_name
    {%- endset -%}
    {%- set definitions = [] -%}
    {%- set by_scale = {} -%}
    {%- for row in run_query(query).rows -%}
        {%- if row[1] not in by_scale -%}
            {%- do by_scale.update({row[1]: {'instrument': row[0], 'scale': row[1], 'fields': []}}) -%}
            {%- do definitions.append(by_scale[row[1]]) -%}
        {%- endif -%}
        {%- do by_scale[row[1]]['fields'].append({
            'field_name': row[2],
            'is_reverse_scored': row[3],
            'min_value': row[4],
            'max_value': row[5],
        }) -%}
    {%- endfor -%}
    {{ return(definitions) }}
{% endmacro %}

{#- Wide rows are turned into per-scale rows by a cross join with a constant VALUES list of the
    scales, each output column being a CASE on the scale. One scan of the wide table, no
    correlated subquery (a LATERAL over ~100 correlated columns makes DuckDB deduplicate them). -#}

{#- The constant list: one ('instrument', 'scale') row per scale definition. -#}
{% macro scale_rows(definitions) -%}
    {%- for definition in definitions %}
        ('{{ definition.instrument }}', '{{ definition.scale }}'){{ ',' if not loop.last }}
    {%- else %}
        (cast(null as {{ dbt.type_string() }}), cast(null as {{ dbt.type_string() }}))
    {%- endfor %}
{%- endmacro %}

{#- Per scale (scale_column holds its name), over the wide row alias: `answered` counts the items
    with a value, `coded_missing` those carrying a missing-data code, `sum` adds the answered
    items (reverse-scored items turned round). -#}
{% macro scale_aggregate(alias, definitions, scale_column, aggregate) -%}
    {%- if definitions %}
    case {{ scale_column }}
        {%- for definition in definitions %}
        when '{{ definition.scale }}' then
            {%- for field in definition.fields %}
            {% if not loop.first %}+ {% endif -%}
            {%- if aggregate == 'answered' -%}
                case when {{ alias }}.{{ field.field_name }} is not null then 1 else 0 end
            {%- elif aggregate == 'coded_missing' -%}
                case when {{ alias }}.{{ field.field_name }}_missing_reason is not null then 1 else 0 end
            {%- elif field.is_reverse_scored -%}
                coalesce({{ field.min_value + field.max_value }} - {{ alias }}.{{ field.field_name }}, 0)
            {%- else -%}
                coalesce({{ alias }}.{{ field.field_name }}, 0)
            {%- endif %}
            {%- endfor %}
        {%- endfor %}
    end
    {%- else -%}
    0
    {%- endif %}
{%- endmacro %}

{#- The distinct items of the given scale definitions as a constant list:
    ('instrument', 'field_name') rows. -#}
{% macro item_rows(definitions) -%}
    {%- set seen = [] -%}
    {%- for definition in definitions -%}
        {%- for field in definition.fields if field.field_name not in seen -%}
            {%- do seen.append(field.field_name) %}
        {{ ',' if seen | length > 1 }}('{{ definition.instrument }}', '{{ field.field_name }}')
        {%- endfor -%}
    {%- endfor -%}
    {%- if not seen %}
        (cast(null as {{ dbt.type_string() }}), cast(null as {{ dbt.type_string() }}))
    {%- endif %}
{%- endmacro %}

{#- The value (suffix '') or missing-data reason (suffix '_missing_reason') of the item named in
    field_column, from the wide row alias. -#}
{% macro item_column(alias, definitions, field_column, suffix='') -%}
    {%- set seen = [] -%}
    {%- for definition in definitions -%}
        {%- for field in definition.fields if field.field_name not in seen -%}
            {%- do seen.append(field.field_name) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if seen %}
    case {{ field_column }}
        {%- for field_name in seen %}
        when '{{ field_name }}' then {{ alias }}.{{ field_name }}{{ suffix }}
        {%- endfor %}
    end
    {%- else -%}
    null
    {%- endif %}
{%- endmacro %}
