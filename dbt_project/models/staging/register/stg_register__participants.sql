with

source as (

    select * from {{ source('register', 'register') }}

),

renamed as (

    select
        study_id as participant_id,
        site,
        arm,
        cluster_id,
        gender,
        ethnic_category,
        age_at_consent,
        has_nhs_number,
        cast(consent_date as date) as consent_date,
        cast(withdrawal_date as date) as withdrawal_date,
        withdrawal_type,
        export_id,
        source_file,
        line_number,
        loaded_at

    from source

)

select * from renamed
