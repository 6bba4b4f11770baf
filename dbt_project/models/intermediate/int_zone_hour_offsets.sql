{#
    Each time zone's UTC offset at the start and at the end of every UTC hour an event falls in:
    int_events_identified gets local time from it by one join on (zone, hour), not by converting
    17 M events zone by zone one at a time (28 s of that model's 69 at 1M people). An hour whose
    two offsets differ (a DST change within it) is converted event by event there.

    A table of its own, not a CTE of int_events_identified: inside the events query DuckDB
    estimated this cross join of zones and hours at 10^11 rows and built the join's hash table
    on the events instead (all their columns: 13.9 s of the model's 22 s at 100k people; 0.5 s
    with this table, whose row count the planner knows).

    The zones are every valid one a context or an event names (an event's local zone is one of
    them, or UTC); the hours, every event's.
#}
{{ config(materialized='table') }}

with

zone_names as (
    select {{ valid_timezone('timezone') }} as zone
    from (select distinct timezone from {{ source('context', 'context') }})
    union
    select distinct timezone from {{ ref('int_events_deduplicated') }}
    union
    select 'UTC'
),

utc_hours as (
    select distinct date_trunc('hour', occurred_at) as hour_start
    from {{ ref('int_events_deduplicated') }}
    where occurred_at is not null
)

select
    zone_names.zone,
    utc_hours.hour_start,
    {{ utc_to_local('utc_hours.hour_start', 'zone_names.zone') }} - utc_hours.hour_start
        as offset_at_start,
    {{ utc_to_local('utc_hours.hour_start + interval 1 hour', 'zone_names.zone') }}
        - (utc_hours.hour_start + interval 1 hour) as offset_at_end
from zone_names
cross join utc_hours
where zone_names.zone is not null
