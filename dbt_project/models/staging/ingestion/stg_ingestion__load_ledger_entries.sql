with

source as (

    select * from {{ source('ingestion', 'load_ledger') }}

),

renamed as (

    select
        entry_id,
        site,
        export_id,
        file,
        sha256,
        status,
        rows_read,
        rows_loaded,
        rows_quarantined,
        error,
        loaded_at

    from source

)

select * from renamed
