{#
    Every row satisfies `expression` (rows where it is false or null fail). Used for
    ranges such as `rank >= 1` or `affinity between 0 and 1`.
#}
{% test expression_is_true(model, expression, column_name=none) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
