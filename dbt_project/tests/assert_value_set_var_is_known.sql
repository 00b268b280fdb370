-- var value_set must name a value set of seeds/eq5d5l_value_sets.csv.
select '{{ var("value_set") }}' as value_set
where '{{ var("value_set") }}' not in (
    select value_set from {{ ref('eq5d5l_value_sets') }}
)
