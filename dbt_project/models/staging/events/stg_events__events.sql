with

events as (
    select * from {{ source('events', 'events') }}
),

event_type_map as (
    select * from {{ ref('stg_config__event_type_map') }}
),

renamed as (
    select
        {{ clean_string('event_id') }} as event_id,
        {{ clean_string('event_type') }} as event_type_raw,
        {{ normalize_key('event_type') }} as event_type_key,
        _occurred_at as occurred_at,
        {{ clean_string('timezone') }} as timezone_raw,
        {{ valid_timezone('timezone') }} as timezone,
        {{ clean_string('user_id') }} as user_id,
        {{ clean_string('anonymous_id') }} as anonymous_id,
        {{ clean_string('session_id') }} as session_id,
        {{ clean_string('item_id') }} as item_id,
        try_cast({{ trimmed('value') }} as double) as value,
        {{ is_nulled('value', 'try_cast(' ~ trimmed('value') ~ ' as double)') }} as is_value_invalid,
        try_cast({{ trimmed('quantity') }} as integer) as quantity,
        {{ is_nulled('quantity', 'try_cast(' ~ trimmed('quantity') ~ ' as integer)') }} as is_quantity_invalid,
        {{ clean_string('page_url') }} as page_url,
        {{ clean_string('referrer') }} as referrer,
        {{ clean_string('properties') }} as properties,
        extra,
        _file,
        _line,
        _loaded_at
    from events
),

mapped as (
    select
        renamed.event_id,
        coalesce(event_type_map.event_type, 'unknown') as event_type,
        renamed.event_type_raw,
        renamed.occurred_at,
        renamed.timezone,
        renamed.timezone_raw is not null and renamed.timezone is null as is_timezone_invalid,
        renamed.user_id,
        renamed.anonymous_id,
        renamed.session_id,
        renamed.item_id,
        renamed.value,
        renamed.is_value_invalid,
        renamed.quantity,
        renamed.is_quantity_invalid,
        renamed.page_url,
        renamed.referrer,
        renamed.properties,
        renamed.extra,
        renamed._file,
        renamed._line,
        renamed._loaded_at
    from renamed
    left join event_type_map
        on renamed.event_type_key = event_type_map.raw_key
)

select * from mapped
