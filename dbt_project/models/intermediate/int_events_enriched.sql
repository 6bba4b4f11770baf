{#
    Incremental: a run re-enriches the events the sessionized model (re)wrote since the last
    build and the events and sessions that received a new context row; the rest is kept.
#}
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
) }}

with

all_events as (
    select * from {{ ref('int_events_sessionized') }}
),

all_contexts as (
    select * from {{ ref('stg_context__contexts') }}
),

{% if is_incremental() %}
new_contexts as (
    select event_id, session_id
    from all_contexts
    where _loaded_at > (
        select coalesce(max(_contexts_watermark), timestamp '-infinity') from {{ this }}
    )
),

previous as (
    select event_id, session_id, actor_key, _last_loaded_at from {{ this }}
),

events as (
    select all_events.*
    from all_events
    left join previous
        on all_events.event_id = previous.event_id
        and all_events.session_id = previous.session_id
        and all_events.actor_key = previous.actor_key
        and all_events._last_loaded_at = previous._last_loaded_at
    where previous.event_id is null
        or all_events.event_id in (select event_id from new_contexts)
        or all_events.session_id in (select session_id from new_contexts)
),

contexts as (
    select all_contexts.*
    from all_contexts
    where all_contexts.event_id in (select event_id from events)
        or all_contexts.session_id in (select session_id from events)
),
{% else %}
events as (
    select * from all_events
),

contexts as (
    select * from all_contexts
),
{% endif %}

contexts_watermark as (
    select max(_loaded_at) as _contexts_watermark from all_contexts
),

ranked_contexts as (
    select
        contexts.*,
        row_number() over (
            partition by contexts.event_id
            order by contexts._loaded_at desc, contexts._file desc, contexts._line desc
        ) as event_recency_rank,
        row_number() over (
            partition by contexts.session_id
            order by contexts._loaded_at desc, contexts._file desc, contexts._line desc
        ) as session_recency_rank
    from contexts
),

event_contexts as (
    -- the newest context delivered for an event
    select *
    from ranked_contexts
    where event_id is not null
        and event_recency_rank = 1
),

session_contexts as (
    -- the newest context delivered for a session (rows that name only a session)
    select *
    from ranked_contexts
    where session_id is not null
        and event_id is null
        and session_recency_rank = 1
),

joined as (
    -- field by field: the event's own context first, then its session's
    select
        events.*,
        event_contexts.event_id is not null or session_contexts.session_id is not null
            as has_context,
        coalesce(event_contexts.device_type, session_contexts.device_type) as device_type,
        coalesce(event_contexts.os, session_contexts.os) as os,
        coalesce(event_contexts.browser, session_contexts.browser) as browser,
        coalesce(event_contexts.geo_country, session_contexts.geo_country) as geo_country,
        coalesce(event_contexts.geo_city, session_contexts.geo_city) as geo_city,
        coalesce(event_contexts.timezone, session_contexts.timezone) as context_timezone
    from events
    left join event_contexts
        on events.event_id = event_contexts.event_id
    left join session_contexts
        on events.session_id = session_contexts.session_id
),

localized as (
    select
        joined.*,
        -- a valid context time zone, else the event's own, else UTC
        coalesce(joined.context_timezone, joined.timezone, 'UTC') as local_timezone
    from joined
),

with_local_time as (
    select
        localized.*,
        {{ utc_to_local('localized.occurred_at', 'localized.local_timezone') }}
            as local_occurred_at
    from localized
),

with_daypart as (
    select
        with_local_time.*,
        extract(hour from with_local_time.local_occurred_at) as local_hour,
        {{ daypart('extract(hour from with_local_time.local_occurred_at)') }} as daypart,
        contexts_watermark._contexts_watermark
    from with_local_time
    cross join contexts_watermark
)

select * from with_daypart
