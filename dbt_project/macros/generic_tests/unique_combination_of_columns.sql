{#
    The combination of `combination_of_columns` is unique (nulls compare equal, as in
    `group by`). A small stand-in for dbt_utils' test of the same name.

    Rows that repeat a combination repeat its hash: the rows are grouped by one 64-bit hash
    first, and only the rows of a repeated hash by their columns (none, when the test passes).
    At L, (person_id, item_id) over 21.8M recommendations: 3.9 / 2.6 s grouped by the columns,
    2.5 / 1.8 s like this.
#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set columns = combination_of_columns | join(', ') %}

with

repeated_hashes as (
    select hash({{ columns }}) as row_hash
    from {{ model }}
    group by row_hash
    having count(*) > 1
),

grouped as (
    select
        {{ columns }},
        count(*) as n_rows
    from {{ model }}
    where hash({{ columns }}) in (select row_hash from repeated_hashes)
    group by {{ columns }}
)

select * from grouped
where n_rows > 1

{% endtest %}
