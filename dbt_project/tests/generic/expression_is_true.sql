{#- Every row satisfies the SQL expression (a row where it is null passes). -#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
