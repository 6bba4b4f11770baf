{#
    Deduplicated events with their session, context, part of the day and person: sessionizing,
    enriching and identifying are one model, built after the identity step, so the 17 M wide
    rows of L are written once. As two models (the enriched events before the identity step,
    then a copy with the person) the full build wrote them twice: 41 s + 28 s at L on a
    machine where the L run took 680 s. Nothing before the identity step reads the enriched
    events: identity resolution reads int_events_deduplicated. The pre-hook drops the tables
    of the former models from warehouses built before.

    Incremental, for two reasons:
    - the event chain: a run re-sessionizes the whole history of every actor (user, or device)
      that has a new or re-delivered event, or whose events changed actor because a new login
      tied a device to a user (or to a second user). Late events of any age land in the right
      session; untouched actors are not read. Of those, it rewrites the events whose session,
      actor or delivery changed, plus every event (of any actor) whose event or session
      received a new context row, taking an untouched actor's session from the stored row;
    - the person: it rewrites the other stored events whose person changed (the identity step
      merged, split or newly linked their user or device). An event's person depends only on
      its (user_id, anonymous_id), so the stored people are compared per distinct pair (1.7M
      at L, kept beside the events by the post-hook: macros/event_pairs.sql), and only the
      events of a pair whose person changed are read.
    The rows equal a full rebuild's; the rest is kept. Rows leave this table by the erasure
    step, or by a full refresh, which the pipeline runs here whenever int_events_deduplicated
    was rebuilt (dagster_project/incremental.py). `events` is the view of its published
    columns; `_identified_at` says which build (re)wrote a row, for int_sessions,
    int_person_activity and the publish step.
#}
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    pre_hook=[
        "drop table if exists {{ this.database }}.{{ this.schema }}.int_events_sessionized",
        "drop table if exists {{ this.database }}.{{ this.schema }}.int_events_enriched",
    ],
    post_hook=["{{ keep_event_pairs() }}"],
) }}

{%- set events_watermark = stored_watermark('_events_watermark') %}

{%- set contexts_watermark = stored_watermark('_contexts_watermark') %}

{#- The columns of a context the events take. `contexts` is read twice, so DuckDB materializes
    it: with `select *` that was every column of the staging view (user agents, IP tokens,
    coordinates) computed and stored for the 6.4M contexts of L. #}
{%- set context_columns -%}
    all_contexts.event_id,
        all_contexts.session_id,
        all_contexts.device_type,
        all_contexts.os,
        all_contexts.browser,
        all_contexts.geo_country,
        all_contexts.geo_city,
        all_contexts.timezone,
        all_contexts._loaded_at,
        all_contexts._file,
        all_contexts._line
{%- endset %}

with

-- `not materialized`: DuckDB materializes a CTE that is read more than once, every column of
-- every row; inlined, each reader scans only the columns it needs (at 17M events: 181 -> 68 s).
events as not materialized (
    select * from {{ ref('int_events_deduplicated') }}
),

all_contexts as not materialized (
    select * from {{ ref('stg_context__contexts') }}
),

run_settings as (
    select * from {{ ref('stg_config__run_settings') }}
),

junk_values as (
    select * from {{ ref('stg_config__identity_junk_values') }}
),

device_logins as (
    -- a device seen logged in as exactly one (non-junk) user is that user's
    select
        events.anonymous_id,
        min(events.user_id) as user_id
    from events
    left join junk_values
        on lower(events.user_id) = junk_values.junk_value
    where events.anonymous_id is not null
        and events.user_id is not null
        and junk_values.junk_value is null
    group by events.anonymous_id
    having count(distinct events.user_id) = 1
),

keyed_all as not materialized (
    {{ with_event_actor_key('events') }}
),

{% if is_incremental() %}
previous as not materialized (
    select event_id, actor_key, session_id, is_session_derived, user_id, anonymous_id
    from {{ this }}
),

-- An event's actor changes only when it is new or re-delivered (loaded after the last build),
-- or when it hangs on its device's login (no usable user id of its own) and that login
-- changed: neither needs the 17M events joined to the stored ones.
new_keyed as (
    select event_id, actor_key, _loaded_at
    from keyed_all
    where _last_loaded_at > timestamp '{{ events_watermark }}'
),

changed as (
    -- new events (first delivered after the last build, so not stored)
    select
        actor_key as new_actor_key,
        null as old_actor_key
    from new_keyed
    where _loaded_at > timestamp '{{ events_watermark }}'

    union all

    -- re-delivered ones; both the old and the new actor are re-sessionized
    select
        new_keyed.actor_key as new_actor_key,
        previous.actor_key as old_actor_key
    from new_keyed
    left join previous
        on new_keyed.event_id = previous.event_id
    where new_keyed._loaded_at <= timestamp '{{ events_watermark }}'

    union all

    -- stored events of a device whose login changed (a new login, or an erased one)
    select
        {{ event_actor_key('previous') }} as new_actor_key,
        previous.actor_key as old_actor_key
    from previous
    left join junk_values
        on lower(previous.user_id) = junk_values.junk_value
    left join device_logins
        on previous.anonymous_id = device_logins.anonymous_id
    where previous.anonymous_id is not null
        and (previous.user_id is null or junk_values.junk_value is not null)
        and {{ event_actor_key('previous') }} <> previous.actor_key
),

affected_actors as (
    select new_actor_key as actor_key from changed
    union
    select old_actor_key as actor_key from changed where old_actor_key is not null
),

new_contexts as (
    select event_id, session_id
    from all_contexts
    where _loaded_at > timestamp '{{ contexts_watermark }}'
),

recontexted_events as (
    -- an untouched actor's events whose event or session received a new context: they keep
    -- their stored session
    select previous.event_id, previous.session_id, previous.is_session_derived
    from previous
    anti join affected_actors
        on previous.actor_key = affected_actors.actor_key
    where previous.event_id in (select event_id from new_contexts)
        or previous.session_id in (select session_id from new_contexts)
),

-- The events of an affected actor, found without computing every event's actor: a stored
-- event's actor changes only in `changed` (it is new, re-delivered, or hangs on a changed
-- login), and then its old actor is affected too; so they are the stored events of an affected
-- actor by their stored actor, and the new and re-delivered ones. `keyed` keeps those whose
-- actor tonight is affected. (Before, every night computed the actor of all 17M events of L;
-- on one L night this SQL took 10.1 s that way and 9.2 s this way, giving the same rows.)
touched_ids as (
    select previous.event_id
    from previous
    semi join affected_actors
        on previous.actor_key = affected_actors.actor_key
    union
    select event_id from new_keyed
    union
    select event_id from recontexted_events
),

touched_events as (
    -- one scan of the wide events for both kinds
    select events.*
    from events
    semi join touched_ids
        on events.event_id = touched_ids.event_id
),

touched as materialized (
    -- tonight's actor of the touched events only
    {{ with_event_actor_key('touched_events') }}
),

keyed as (
    select touched.*
    from touched
    semi join affected_actors
        on touched.actor_key = affected_actors.actor_key
),
{% else %}
keyed as not materialized (
    select * from keyed_all
),
{% endif %}

events_watermark as (
    select max(_last_loaded_at) as _events_watermark from events
),

-- the windows run over four narrow columns; the wide rows join back by event_id
without_given_session as (
    select
        keyed.event_id,
        keyed.actor_key,
        keyed.occurred_at,
        lag(keyed.occurred_at) over (
            partition by keyed.actor_key
            order by keyed.occurred_at, keyed.event_id
        ) as previous_occurred_at
    from keyed
    where keyed.session_id is null
),

flagged_session_starts as (
    select
        without_given_session.event_id,
        without_given_session.actor_key,
        without_given_session.occurred_at,
        case
            when without_given_session.previous_occurred_at is null then 1
            when without_given_session.occurred_at > {{ dbt.dateadd(
                'minute',
                'run_settings.session_gap_minutes',
                'without_given_session.previous_occurred_at'
            ) }} then 1
            else 0
        end as is_session_start
    from without_given_session
    cross join run_settings
),

numbered_sessions as (
    select
        flagged_session_starts.event_id,
        flagged_session_starts.actor_key,
        flagged_session_starts.occurred_at,
        sum(flagged_session_starts.is_session_start) over (
            partition by flagged_session_starts.actor_key
            order by flagged_session_starts.occurred_at, flagged_session_starts.event_id
            rows between unbounded preceding and current row
        ) as actor_session_number
    from flagged_session_starts
),

derived_sessions as (
    select
        numbered_sessions.event_id,
        numbered_sessions.actor_key,
        min(numbered_sessions.occurred_at) over (
            partition by numbered_sessions.actor_key, numbered_sessions.actor_session_number
        ) as session_started_at
    from numbered_sessions
),

-- three events in four carry their session: only the others are joined back to theirs
{%- set event_columns = [
    'event_id', 'event_type', 'event_type_raw', 'occurred_at', 'timezone', 'user_id',
    'anonymous_id', 'actor_key',
] %}
{%- set payload_columns = [
    'item_id', 'value', 'quantity', 'page_url', 'referrer', 'properties', 'extra',
    'n_deliveries', '_last_loaded_at',
] %}
with_given_session as (
    select
        {%- for column in event_columns %}
        keyed.{{ column }},
        {%- endfor %}
        keyed.session_id,
        false as is_session_derived,
        {%- for column in payload_columns %}
        keyed.{{ column }},
        {%- endfor %}
        events_watermark._events_watermark
    from keyed
    cross join events_watermark
    where keyed.session_id is not null
),

with_derived_session as (
    select
        {%- for column in event_columns %}
        keyed.{{ column }},
        {%- endfor %}
        -- deterministic: the same actor and first event time always give the same id
        md5(
            derived_sessions.actor_key || '|' || cast(derived_sessions.session_started_at as varchar)
        ) as session_id,
        true as is_session_derived,
        {%- for column in payload_columns %}
        keyed.{{ column }},
        {%- endfor %}
        events_watermark._events_watermark
    from keyed
    inner join derived_sessions
        on keyed.event_id = derived_sessions.event_id
    cross join events_watermark
    where keyed.session_id is null
),

sessionized as (
    select * from with_given_session
    union all
    select * from with_derived_session
),

{% if is_incremental() %}
stored as not materialized (
    select * from {{ this }}
),

resessionized as (
    -- the re-sessionized events that are new or whose session, actor or delivery changed, or
    -- that received a new context
    select sessionized.*
    from sessionized
    left join stored
        on sessionized.event_id = stored.event_id
        and sessionized.session_id = stored.session_id
        and sessionized.actor_key = stored.actor_key
        and sessionized._last_loaded_at = stored._last_loaded_at
    where stored.event_id is null
        or sessionized.event_id in (select event_id from new_contexts)
        or sessionized.session_id in (select session_id from new_contexts)
),

recontexted as (
    select
        {%- for column in event_columns %}
        touched.{{ column }},
        {%- endfor %}
        recontexted_events.session_id,
        recontexted_events.is_session_derived,
        {%- for column in payload_columns %}
        touched.{{ column }},
        {%- endfor %}
        events_watermark._events_watermark
    from touched
    inner join recontexted_events
        on touched.event_id = recontexted_events.event_id
    cross join events_watermark
),

events_to_enrich as (
    select * from resessionized
    union all
    select * from recontexted
),

contexts as (
    select
        {{ context_columns }}
    from all_contexts
    where all_contexts.event_id in (select event_id from events_to_enrich)
        or all_contexts.session_id in (select session_id from events_to_enrich)
),
{% else %}
events_to_enrich as not materialized (
    select * from sessionized
),

contexts as (
    select
        {{ context_columns }}
    from all_contexts
),
{% endif %}

contexts_watermark as (
    {%- if is_incremental() %}
    -- the contexts loaded since raise it (the staging view, read whole, would compute every
    -- column of every context first)
    select
        greatest(
            timestamp '{{ contexts_watermark }}',
            (
                select max(_loaded_at)
                from all_contexts
                where _loaded_at > timestamp '{{ contexts_watermark }}'
            )
        ) as _contexts_watermark
    {%- else %}
    select max(_loaded_at) as _contexts_watermark from all_contexts
    {%- endif %}
),

-- the newest delivery wins (loaded last, then file and line): one aggregate per key over the
-- context's few columns, which spills, instead of a window over whole rows
{%- set newest_context_arguments -%}
struct_pack(
                device_type := contexts.device_type,
                os := contexts.os,
                browser := contexts.browser,
                geo_country := contexts.geo_country,
                geo_city := contexts.geo_city,
                timezone := contexts.timezone
            ),
            struct_pack(
                loaded_at := contexts._loaded_at, file := contexts._file, line := contexts._line
            )
{%- endset %}

event_contexts as (
    -- the newest context delivered for an event
    select
        contexts.event_id,
        arg_max(
            {{ newest_context_arguments }}
        ) as context
    from contexts
    where contexts.event_id is not null
    group by contexts.event_id
),

session_contexts as (
    -- the newest context delivered for a session (rows that name only a session)
    select
        contexts.session_id,
        arg_max(
            {{ newest_context_arguments }}
        ) as context
    from contexts
    where contexts.session_id is not null
        and contexts.event_id is null
    group by contexts.session_id
),

joined as (
    -- field by field: the event's own context first, then its session's
    select
        events_to_enrich.*,
        {%- for field in ['device_type', 'os', 'browser', 'geo_country', 'geo_city'] %}
        coalesce(event_contexts.context.{{ field }}, session_contexts.context.{{ field }})
            as {{ field }},
        {%- endfor %}
        coalesce(event_contexts.context.timezone, session_contexts.context.timezone)
            as context_timezone
    from events_to_enrich
    left join event_contexts
        on events_to_enrich.event_id = event_contexts.event_id
    left join session_contexts
        on events_to_enrich.session_id = session_contexts.session_id
),

localized as (
    select
        joined.*,
        -- a valid context time zone, else the event's own, else UTC
        coalesce(joined.context_timezone, joined.timezone, 'UTC') as local_timezone
    from joined
),

-- Local time by each zone's UTC offset per UTC hour (int_zone_hour_offsets); an hour with a DST
-- change within it converts its events one by one.
zone_hours as (
    select * from {{ ref('int_zone_hour_offsets') }}
),

with_local_time as (
    select
        localized.*,
        case
            when zone_hours.offset_at_start = zone_hours.offset_at_end
                then localized.occurred_at + zone_hours.offset_at_start
            else {{ utc_to_local('localized.occurred_at', 'localized.local_timezone') }}
        end as local_occurred_at
    from localized
    left join zone_hours
        on localized.local_timezone = zone_hours.zone
        and date_trunc('hour', localized.occurred_at) = zone_hours.hour_start
),

with_daypart as (
    select
        with_local_time.*,
        {{ daypart('extract(hour from with_local_time.local_occurred_at)') }} as daypart,
        contexts_watermark._contexts_watermark
    from with_local_time
    cross join contexts_watermark
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

{#- The stored columns, but the person and the stamp. The two zones local_timezone came from
    are not stored, nor the kept delivery's file, line and load time, which
    int_events_deduplicated holds: nothing downstream reads them, and writing 17M rows costs
    1.2-1.9 s per text column. The actor, the latest delivery's load time and the two
    watermarks are the event chain's bookkeeping (`events` does not publish them). -#}
{%- set columns = [
    'event_id', 'event_type', 'event_type_raw', 'occurred_at', 'user_id', 'anonymous_id',
    'actor_key', 'session_id', 'is_session_derived', 'item_id', 'value', 'quantity',
    'page_url', 'referrer', 'properties', 'extra', 'n_deliveries', 'device_type', 'os',
    'browser', 'geo_country', 'geo_city', 'local_timezone', 'local_occurred_at', 'daypart',
    '_last_loaded_at', '_events_watermark', '_contexts_watermark',
] %}

{% if is_incremental() %}
{%- set stored_pairs = stored_event_pairs() %}
previous_people as (
    -- one person per pair: every build rewrites the events of a pair whose person changed.
    -- The post-hook keeps the pairs' people beside the events (macros/event_pairs.sql).
    {%- if stored_pairs is not none %}
    select user_id, anonymous_id, person_id
    from {{ stored_pairs }}
    {%- else %}
    select distinct user_id, anonymous_id, person_id
    from {{ this }}
    {%- endif %}
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

reidentified as (
    -- the stored events of a pair whose person changed that the event chain does not rewrite
    select stored.*
    from {{ this }} as stored
    semi join changed_people
        on stored.user_id is not distinct from changed_people.user_id
        and stored.anonymous_id is not distinct from changed_people.anonymous_id
    anti join events_to_enrich
        on stored.event_id = events_to_enrich.event_id
),
{% endif %}

to_identify as not materialized (
    select {{ columns | join(', ') }} from with_daypart
    {%- if is_incremental() %}
    union all
    select {{ columns | join(', ') }} from reidentified
    {%- endif %}
),

identified as (
    -- the user's person when the event names a user, else the device's person
    select
        coalesce(people_by_user_id.person_id, people_by_anonymous_id.person_id) as person_id,
        {%- for column in columns %}
        to_identify.{{ column }},
        {%- endfor %}
        -- which build (re)wrote the row: int_sessions, int_person_activity and the publish
        -- step read the rows newer than they last did
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
            as _identified_at
    from to_identify
    left join people_by_user_id
        on to_identify.user_id = people_by_user_id.user_id
    left join people_by_anonymous_id
        on to_identify.anonymous_id = people_by_anonymous_id.anonymous_id
)

select * from identified
