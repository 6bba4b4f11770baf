with

run_settings as (
    select * from {{ source('config', 'run_settings') }}
),

collapsed as (
    -- exactly one row, even when the table is empty
    select
        max(cast(as_of as timestamp)) as as_of,
        coalesce(max(cast(session_gap_minutes as integer)), 30) as session_gap_minutes
    from run_settings
)

select * from collapsed
