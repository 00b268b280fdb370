{#- One site's rows of a raw table: on a build of some sites, a test reads the rebuilt
    sites' rows only (get_where_subquery, macros/site_partitions.sql). -#}
{{ config(meta={'site_rows': 'site'}) }}
{%- set fields = redcap_fields() -%}

with

source as (

    select * from {{ source('redcap', 'redcap_records') }}

),

renamed as (

    select
        record_id
        || '/' || redcap_event_name
        || coalesce('/' || redcap_repeat_instance, '') as response_id,
        record_id as participant_id,
        redcap_event_name,
        redcap_repeat_instrument as repeat_instrument,
        cast(redcap_repeat_instance as {{ dbt.type_int() }}) as repeat_instance,
        redcap_data_access_group as data_access_group,
        {%- for field in fields %}
        {{ redcap_value(field.field_name, field.value_type) }} as {{ field.field_name }},
        {{ redcap_missing_reason(field.field_name) }} as {{ field.field_name }}_missing_reason,
        {%- endfor %}
        coalesce(quarantined_instruments, '') as quarantined_instruments,
        site,
        export_id,
        source_file,
        line_number,
        loaded_at

    from source

)

select * from renamed
