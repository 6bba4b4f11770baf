{{ config(materialized='table') }}

with

run_settings as (
    select * from {{ ref('stg_config__run_settings') }}
),

events as (
    select * from {{ ref('int_events_deduplicated') }}
),

newest_event as (
    select max(occurred_at) as newest_occurred_at
    from events
),

resolved as (
    -- windows are relative to the configured as-of time, else to the newest event
    select
        coalesce(run_settings.as_of, newest_event.newest_occurred_at) as as_of,
        run_settings.as_of is not null as is_as_of_configured,
        newest_event.newest_occurred_at,
        run_settings.session_gap_minutes
    from run_settings
    cross join newest_event
)

select * from resolved
