with

user_segments as (
    select * from {{ source('ml', 'user_segments') }}
),

final as (
    select
        cast(person_id as varchar) as person_id,
        cast(segment_type as varchar) as segment_type,
        cast(segment_id as varchar) as segment_id,
        cast(segment_name as varchar) as segment_name,
        cast(score as double) as score
    from user_segments
)

select * from final
