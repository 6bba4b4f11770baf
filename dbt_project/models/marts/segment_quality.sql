with

segment_quality as (
    select * from {{ source('ml', 'segment_quality') }}
),

final as (
    select
        cast(run_at as timestamp) as run_at,
        cast(algorithm as varchar) as algorithm,
        cast(k as integer) as k,
        cast(silhouette as double) as silhouette,
        cast(davies_bouldin as double) as davies_bouldin,
        cast(n_people as bigint) as n_people,
        cast(is_chosen as boolean) as is_chosen
    from segment_quality
)

select * from final
