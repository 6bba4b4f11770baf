with

evaluation as (
    select * from {{ source('ml', 'recommendation_evaluation') }}
),

final as (
    select
        cast(run_at as timestamp) as run_at,
        cast(as_of as timestamp) as as_of,
        cast(algorithm as varchar) as algorithm,
        cast(k as integer) as k,
        cast(n_users as bigint) as n_users,
        cast(precision_at_k as double) as precision_at_k,
        cast(recall_at_k as double) as recall_at_k,
        cast(ndcg_at_k as double) as ndcg_at_k,
        cast(map_at_k as double) as map_at_k,
        cast(catalog_coverage as double) as catalog_coverage,
        cast(novelty as double) as novelty,
        cast(fit_seconds as double) as fit_seconds,
        cast(is_chosen as boolean) as is_chosen
    from evaluation
)

select * from final
