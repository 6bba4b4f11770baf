with

items as (
    select * from {{ ref('stg_catalog__items') }}
),

events as (
    select * from {{ ref('int_events_deduplicated') }}
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

cataloged as (
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
        true as is_in_catalog,
        extra
    from deduplicated
),

seen_only as (
    -- items events mention that no catalog file describes (or no catalog was delivered):
    -- kept, so every event and recommendation refers to a known item
    select
        events.item_id,
        null::varchar as title,
        null::varchar as category,
        null::varchar as subcategory,
        null::varchar as brand,
        null::double as price,
        null::varchar as tags,
        null::boolean as is_in_stock,
        null::boolean as is_curated,
        false as is_in_catalog,
        null::varchar as extra
    from events
    left join cataloged on events.item_id = cataloged.item_id
    where events.item_id is not null and cataloged.item_id is null
    group by events.item_id
),

final as (
    select * from cataloged
    union all
    select * from seen_only
)

select * from final
