with

source as (

    select * from {{ source('ingestion', 'quarantine') }}

),

renamed as (

    select
        site,
        export_id,
        file,
        line,
        "column" as column_name,
        reason,
        detail,
        scope,
        instrument,
        is_current_export,
        quarantined_at

    from source

)

select * from renamed
