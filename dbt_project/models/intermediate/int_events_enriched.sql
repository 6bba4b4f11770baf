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
        events.*,
        event_contexts.event_id is not null or session_contexts.session_id is not null
            as has_context,
        {%- for field in ['device_type', 'os', 'browser', 'geo_country', 'geo_city'] %}
        coalesce(event_contexts.context.{{ field }}, session_contexts.context.{{ field }})
            as {{ field }},
        {%- endfor %}
        coalesce(event_contexts.context.timezone, session_contexts.context.timezone)
            as context_timezone
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
        extract(hour from with_local_time.local_occurred_at) as local_hour,
        {{ daypart('extract(hour from with_local_time.local_occurred_at)') }} as daypart,
        contexts_watermark._contexts_watermark,
        -- which build (re)wrote the row: int_events_identified re-identifies these
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp) as _enriched_at
    from with_local_time
    cross join contexts_watermark
)

select * from with_daypart
