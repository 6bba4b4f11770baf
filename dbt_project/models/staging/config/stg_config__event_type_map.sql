with

event_type_map as (
    select * from {{ source('config', 'event_type_map') }}
),

normalized as (
    select
        {{ normalize_key('raw_key') }} as raw_key,
        lower(trim(event_type)) as event_type
    from event_type_map
    where {{ clean_string('raw_key') }} is not null
),

deduplicated as (
    -- a spelling listed under two canonical types resolves to the first one alphabetically
    select
        raw_key,
        min(event_type) as event_type
    from normalized
    group by raw_key
)

select * from deduplicated
