-- Participants withdrawn with all_data must not appear in any participant-level mart. On a build of
-- some sites, each mart's rebuilt participants are read (in_rebuilt_rows_of, macros/site_partitions.sql):
-- a new withdrawal changes the register, which rebuilds the participant in every mart.
{{ config(severity='error', meta={'dagster': {'ref': {'name': 'participants'}}}) }}

with

all_data_withdrawals as (

    select participant_id from {{ ref('stg_register__participants') }}
    where withdrawal_type = 'all_data'

),

mart_participants as (

    {%- set marts = [
        'participants', 'participant_timepoints', 'outcome_scores', 'carer_timepoints',
        'network_meetings', 'service_use_costs', 'cost_effectiveness', 'missing_assessments',
        'time_to_relapse',
    ] %}
    {%- for mart in marts %}
    select '{{ mart }}' as mart, participant_id from {{ ref(mart) }}
    where {{ in_rebuilt_rows_of([mart]) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

)

select mart_participants.*
from mart_participants
inner join all_data_withdrawals
    on mart_participants.participant_id = all_data_withdrawals.participant_id
