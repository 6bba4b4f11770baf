with

survivorship_rules as (
    select * from {{ source('config', 'survivorship_rules') }}
),

renamed as (
    select
        lower(trim(cast(field as varchar))) as field,
        lower(trim(cast(rule as varchar))) as rule,
        lower({{ clean_string('cast(source_system as varchar)') }}) as source_system,
        cast(priority as integer) as priority
    from survivorship_rules
    where {{ clean_string('cast(field as varchar)') }} is not null
)

select * from renamed
