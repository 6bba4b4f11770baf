{#-
    Incremental: a run re-identifies the events the event chain (re)wrote since this table was
    built (a newer `_enriched_at`) and the events whose person changed (the identity step
    merged, split or newly linked their user or device); the rest is kept. Rows leave this
    table by the erasure step, or by a full refresh, which the pipeline runs here whenever the
    event chain was rebuilt (dagster_project/incremental.py).

    Neither kind needs the 17M stored events joined to the enriched ones (at L, 21 s a night):
    the chain's rewritten rows are the newest (a literal `_enriched_at` bound skips the older
    row groups), and an event's person depends only on its (user_id, anonymous_id), so the
    stored people are compared per distinct pair (a few hundred thousand), and only the events
    of a pair whose person changed are read again.
-#}
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
) }}

{%- set enriched_watermark = stored_watermark('_enriched_at') %}

with

events as not materialized (
    select * from {{ ref('int_events_enriched') }}
),

identity_map as (
    select * from {{ ref('identity_map') }}
),

people_by_user_id as (
    select
        identifier as user_id,
        min(person_id) as person_id
    from identity_map
    where identifier_type = 'user_id'
    group by identifier
),

people_by_anonymous_id as (
    select
        identifier as anonymous_id,
        min(person_id) as person_id
    from identity_map
    where identifier_type = 'anonymous_id'
    group by identifier
),

{#- The columns marts.events publishes, and the watermark this model is incremental on. The
    event chain's own bookkeeping is not copied here: the actor key and the chain's watermarks
    are in int_events_enriched, the kept delivery's source file, line and load time in
    int_events_deduplicated. Writing 17M rows costs 1.2-1.9 s per text column whatever its
    compression, and this full build took 50-56 s with them, 40-49 s without (at L, on a
    machine where the L run took 1061 s). -#}
{%- set columns = [
    'event_id', 'event_type', 'event_type_raw', 'occurred_at', 'user_id', 'anonymous_id',
    'session_id', 'is_session_derived', 'item_id', 'value', 'quantity', 'page_url', 'referrer',
    'properties', 'device_type', 'os', 'browser', 'geo_country', 'geo_city', 'local_timezone',
    'local_occurred_at', 'daypart', 'n_deliveries', 'extra', '_enriched_at',
] %}

identified as not materialized (
    -- the user's person when the event names a user, else the device's person
    select
        coalesce(people_by_user_id.person_id, people_by_anonymous_id.person_id) as person_id,
        {%- for column in columns %}
        events.{{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from events
    left join people_by_user_id
        on events.user_id = people_by_user_id.user_id
    left join people_by_anonymous_id
        on events.anonymous_id = people_by_anonymous_id.anonymous_id
),

stamped as not materialized (
    -- which build (re)wrote the row: the publish step copies only these into the last
    -- published snapshot (dagster_project/publish.py)
    select
        identified.*,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
            as _identified_at
    from identified
),

{% if is_incremental() %}
previous_people as (
    -- one person per pair: every build rewrites the events of a pair whose person changed
    select distinct user_id, anonymous_id, person_id
    from {{ this }}
),

changed_people as (
    select previous_people.user_id, previous_people.anonymous_id
    from previous_people
    left join people_by_user_id
        on previous_people.user_id = people_by_user_id.user_id
    left join people_by_anonymous_id
        on previous_people.anonymous_id = people_by_anonymous_id.anonymous_id
    where coalesce(people_by_user_id.person_id, people_by_anonymous_id.person_id)
        is distinct from previous_people.person_id
),

changed as (
    -- what the event chain rewrote since the last build
    select stamped.*
    from stamped
    where stamped._enriched_at > timestamp '{{ enriched_watermark }}'

    union all

    -- the other events of a pair whose person changed
    select stamped.*
    from stamped
    semi join changed_people
        on stamped.user_id is not distinct from changed_people.user_id
        and stamped.anonymous_id is not distinct from changed_people.anonymous_id
    where stamped._enriched_at <= timestamp '{{ enriched_watermark }}'
)
{% else %}
changed as (
    select * from stamped
)
{% endif %}

select * from changed
