{#- One site's rows of a raw table: on a build of some sites, a test reads the rebuilt
    sites' rows only (get_where_subquery, macros/site_partitions.sql). -#}
{{ config(meta={'site_rows': 'site'}) }}
with

source as (

    select * from {{ source('pod_team', 'network_meetings') }}

),

renamed as (

    select
        meeting_id,
        study_id as participant_id,
        cast(meeting_date as date) as meeting_date,
        cast(duration_minutes as {{ dbt.type_int() }}) as duration_minutes,
        cast(service_user_present as {{ dbt.type_int() }}) = 1 as has_service_user_present,
        cast(family_members_present as {{ dbt.type_int() }}) as family_members_present,
        cast(other_network_members_present as {{ dbt.type_int() }})
            as other_network_members_present,
        cast(clinicians_present as {{ dbt.type_int() }}) as clinicians_present,
        cast(peer_support_worker_present as {{ dbt.type_int() }}) = 1
            as has_peer_support_worker,
        {%- for column in key_element_columns() %}
        cast({{ column }} as {{ dbt.type_int() }}) as {{ column }},
        {%- endfor %}
        site,
        export_id,
        source_file,
        line_number,
        loaded_at

    from source

)

select * from renamed
