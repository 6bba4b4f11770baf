with

categorical_map as (
    select * from {{ source('config', 'categorical_map') }}
),

normalized as (
    select
        lower(trim(field)) as field,
        {{ normalize_key('raw_key') }} as raw_key,
        lower(trim(value)) as value
    from categorical_map
    where {{ clean_string('raw_key') }} is not null
),

deduplicated as (
    select
        field,
        raw_key,
        min(value) as value
    from normalized
    group by field, raw_key
)

select * from deduplicated
