with

items as (
    select * from {{ ref('stg_catalog__items') }}
),

ranked as (
    select
        items.*,
        row_number() over (
            partition by items.item_id
            order by items._loaded_at desc, items._file desc, items._line desc
        ) as delivery_recency_rank
    from items
),

deduplicated as (
    -- the newest delivery of an item describes it
    select *
    from ranked
    where delivery_recency_rank = 1
),

final as (
    select
        item_id,
        title,
        category,
        subcategory,
        brand,
        price,
        tags,
        is_in_stock,
        is_curated,
        extra
    from deduplicated
)

select * from final
