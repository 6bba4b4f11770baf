with

recommendations as (
    select * from {{ source('ml', 'recommendations') }}
),

final as (
    select
        cast(person_id as varchar) as person_id,
        cast(rank as integer) as rank,
        cast(item_id as varchar) as item_id,
        cast(score as double) as score,
        cast(algorithm as varchar) as algorithm,
        cast(reason as varchar) as reason
    from recommendations
)

select * from final
