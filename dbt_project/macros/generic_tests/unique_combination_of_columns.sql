{#
    The combination of `combination_of_columns` is unique (nulls compare equal, as in
    `group by`). A small stand-in for dbt_utils' test of the same name.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

grouped as (
    select
        {{ combination_of_columns | join(', ') }},
        count(*) as n_rows
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
)

select * from grouped
where n_rows > 1

{% endtest %}
