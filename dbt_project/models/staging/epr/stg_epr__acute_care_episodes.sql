{#- One site's rows of a raw table: on a build of some sites, a test reads the rebuilt
    sites' rows only (get_where_subquery, macros/site_partitions.sql). -#}
{{ config(meta={'site_rows': 'site'}) }}
with

source as (

    select * from {{ source('epr', 'acute_care') }}

),

renamed as (

    select
        -- episode_id is the key of one site's EPR: unique only within the site. It stays in
        -- staging (an EPR key never reaches a mart, national-trial contract 6).
        site || '/' || episode_id as episode_key,
        episode_id,
        study_id as participant_id,
        episode_type,
        {{ epr_date('start_date') }} as start_date,
        {{ epr_date('end_date') }} as end_date,
        cast(detained as {{ dbt.type_int() }}) = 1 as is_detained,
        site,
        export_id,
        source_file,
        line_number,
        loaded_at

    from source

)

select * from renamed
