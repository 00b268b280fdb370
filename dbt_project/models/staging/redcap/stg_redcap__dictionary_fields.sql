with

source as (

    select * from {{ source('redcap', 'redcap_dictionary') }}

),

renamed as (

    select
        "Variable / Field Name" as field_name,
        "Form Name" as form_name,
        "Section Header" as section_header,
        "Field Type" as field_type,
        "Field Label" as field_label,
        "Choices, Calculations, OR Slider Labels" as choices,
        "Field Note" as field_note,
        "Text Validation Type OR Show Slider Number" as validation_type,
        "Text Validation Min" as validation_min,
        "Text Validation Max" as validation_max,
        "Branching Logic (Show field only if...)" as branching_logic,
        "Custom Alignment" as custom_alignment,
        "Question Number (surveys only)" as question_number,
        "Matrix Group Name" as matrix_group_name,
        "Field Annotation" as field_annotation,
        site,
        export_id,
        source_file,
        line_number,
        loaded_at,
        coalesce(lower(trim("Identifier?")) = 'y', false) as is_identifier,
        coalesce(lower(trim("Required Field?")) = 'y', false) as is_required,
        coalesce(lower(trim("Matrix Ranking?")) = 'y', false) as is_matrix_ranking

    from source

)

select * from renamed
