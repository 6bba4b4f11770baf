{#-
    Data tests over the whole history of a growing raw table re-read every event every night
    (at 17 M events, three staging tests took about 100 s of thread time). A test whose `where`
    config contains `__new_deliveries__` checks only the rows loaded since the last successful
    build of the event chain: the older rows passed that test when they were loaded. It checks
    every row on a full refresh (`--full-refresh`, or whenever incremental.decide rebuilds: a
    changed test in the staging yml is a code change) and on the first build.

    `__this__` in a `where` stands for the tested relation. The incremental event models test
    the rows their latest build wrote, e.g. `_identified_at = (select max(_identified_at) from
    __this__)`: a build deletes the rows whose event_id it writes (delete+insert), so when its
    own rows pass, every row does; a full build writes, and so tests, them all. (At 17 M events
    the three uniqueness tests read all rows for 17 s a night.)
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__new_deliveries__' in where -%}
            {%- set where = where | replace('__new_deliveries__', new_deliveries_condition()) -%}
        {%- endif -%}
        {%- if '__served_since_last_tested__' in where -%}
            {%- set where = where | replace(
                '__served_since_last_tested__', served_since_last_tested_condition()
            ) -%}
        {%- endif -%}
        {%- set where = where | replace('__this__', relation | string) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{% macro new_deliveries_condition() -%}
    {#- A literal, read now: DuckDB pushes `_loaded_at > timestamp '...'` down to the raw table's
        scan, through the staging view's joins, which it does not do for a subquery (at 6 M
        contexts: 0.01 s against 14 s). -#}
    {%- set baseline = none -%}
    {%- if execute and not flags.FULL_REFRESH -%}
        {%- set baseline = adapter.get_relation(
            database=target.database, schema='audit', identifier='incremental_baseline'
        ) -%}
    {%- endif -%}
    {%- set built_at = none -%}
    {%- if baseline is not none -%}
        {%- set found = run_query(
            "select cast(max(built_at) as varchar) from " ~ baseline
            ~ " where kind in ('file', 'fingerprint')"
        ).columns[0].values()[0] -%}
        {%- set built_at = found -%}
    {%- endif -%}
    {%- if built_at is none -%}
        true
    {%- else -%}
        _loaded_at > timestamp '{{ built_at }}'
    {%- endif -%}
{%- endmacro %}

{#-
    `__served_since_last_tested__` in a `where`: the rows of the people whose recommendations
    were served since the ml_marts phase last built and passed its tests (`tested` in
    audit.incremental_baseline, dagster_project/incremental.py). A night that serves only the
    people whose inputs changed rewrites their rows only: every other person's rows are the
    ones that passed then (at L, the two uniqueness tests read 21.8M rows for 6 s a night).
    Every row on a full refresh, before the first such build, or without the served table.
-#}
{% macro served_since_last_tested_condition() -%}
    {%- set tested_at = none -%}
    {%- if execute and not flags.FULL_REFRESH -%}
        {%- set baseline = adapter.get_relation(
            database=target.database, schema='audit', identifier='incremental_baseline'
        ) -%}
        {%- set served = adapter.get_relation(
            database=target.database, schema='ml', identifier='recommendations_served'
        ) -%}
        {%- if baseline is not none and served is not none -%}
            {%- set tested_at = run_query(
                "select cast(max(built_at) as varchar) from " ~ baseline
                ~ " where kind = 'tested' and key = 'ml_marts'"
            ).columns[0].values()[0] -%}
        {%- endif -%}
    {%- endif -%}
    {%- if tested_at is none -%}
        true
    {%- else -%}
        person_id in (
            select person_id from {{ served }} where served_at >= timestamp '{{ tested_at }}'
        )
    {%- endif -%}
{%- endmacro %}

{#-
    The newest `column` of the incremental model's stored rows, as a timestamp literal's text
    ('-infinity' on a full build): a constant bound lets zone maps skip the row groups loaded
    before, where a scalar subquery is compared row by row.
-#}
{% macro stored_watermark(column) -%}
    {%- if is_incremental() and execute -%}
        {{ return(run_query(
            "select coalesce(max(" ~ column ~ "), timestamp '-infinity')::varchar from " ~ this
        ).rows[0][0]) }}
    {%- endif -%}
    {{ return('-infinity') }}
{%- endmacro %}
