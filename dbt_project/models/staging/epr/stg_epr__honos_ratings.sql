{#- One site's rows of a raw table: on a build of some sites, a test reads the rebuilt
    sites' rows only (get_where_subquery, macros/site_partitions.sql). -#}
{{ config(meta={'site_rows': 'site'}) }}
with

source as (

    select * from {{ source('epr', 'honos') }}

),

renamed as (

    select
        -- assessment_id is the key of one site's EPR: unique only within the site.
        site || '/' || assessment_id as response_id,
        assessment_id,
        study_id as participant_id,
        {{ epr_date('assessment_date') }} as assessment_date,
        {{ epr_date_format('assessment_date') }} as assessment_date_format,
        rater_role,
        {%- for column in honos_item_columns() %}
        {{ honos_value(column) }} as {{ column }},
        {{ honos_missing_reason(column) }} as {{ column }}_missing_reason,
        {%- endfor %}
        honos_08_problem_type,
        site,
        export_id,
        source_file,
        line_number,
        loaded_at

    from source

)

select * from renamed
