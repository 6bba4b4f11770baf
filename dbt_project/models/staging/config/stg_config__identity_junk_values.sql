with

identity_junk_values as (
    select * from {{ source('config', 'identity_junk_values') }}
),

normalized as (
    select distinct
        lower(trim(value)) as junk_value
    from identity_junk_values
    where value is not null
)

select * from normalized
