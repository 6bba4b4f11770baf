{#
    dbt's `unique` test, answering the same rows, for DuckDB: when the column's non-null values
    have as many distinct 64-bit hashes as rows there is no duplicate, and the values are not
    grouped at all (one 8-byte hash per row instead of the value itself); otherwise the
    duplicated values and their counts, exactly as dbt's own test returns them. A hash
    collision only sends the test to the exact grouping, which then decides.
    At L, event_id over 17M events: 4.7 s grouped by value, 3.4-3.9 s like this.
#}
{% macro duckdb__test_unique(model, column_name) %}

with

counted as (
    select
        count(*) as n_values,
        count(distinct hash({{ column_name }})) as n_hashes
    from {{ model }}
    where {{ column_name }} is not null
)

select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
    and (select n_values > n_hashes from counted)
group by {{ column_name }}
having count(*) > 1

{% endmacro %}
