with

catalog as (
    select * from {{ source('catalog', 'catalog') }}
),

categorical_map as (
    select * from {{ ref('stg_config__categorical_map') }}
),

categories as (
    select
        raw_key,
        value as category
    from categorical_map
    where field = 'category'
),

renamed as (
    select
        {{ clean_string('item_id') }} as item_id,
        {{ clean_string('title') }} as title,
        {{ clean_string('category') }} as category_raw,
        {{ normalize_key('category') }} as category_key,
        {{ slugify('category') }} as category_slug,
        {{ slugify('subcategory') }} as subcategory,
        {{ clean_string('brand') }} as brand,
        {{ clean_string('price') }} as price_raw,
        try_cast(trim(price) as double) as price_parsed,
        -- `["a", "b"]`, `a; b` and `a|b` all become `a,b`
        nullif(
            trim(
                regexp_replace(
                    lower(regexp_replace(trim(tags), '[\[\]"'']', '', 'g')),
                    '\s*[,;|]+\s*',
                    ',',
                    'g'
                ),
                ', '
            ),
            ''
        ) as tags,
        {{ clean_string('in_stock') }} as in_stock_raw,
        {{ parse_boolean('in_stock') }} as is_in_stock,
        {{ clean_string('is_curated') }} as is_curated_raw,
        {{ parse_boolean('is_curated') }} as is_curated,
        extra,
        _file,
        _line,
        _loaded_at
    from catalog
),

unified as (
    select
        renamed.item_id,
        renamed.title,
        -- a category the config does not know keeps its own slug
        coalesce(categories.category, renamed.category_slug) as category,
        renamed.category_raw,
        renamed.category_raw is not null
            and categories.category is null as is_category_unrecognized,
        renamed.subcategory,
        renamed.brand,
        case when renamed.price_parsed >= 0 then renamed.price_parsed end as price,
        renamed.price_raw is not null
            and coalesce(renamed.price_parsed < 0, true) as is_price_invalid,
        renamed.tags,
        renamed.is_in_stock,
        renamed.in_stock_raw is not null and renamed.is_in_stock is null as is_in_stock_invalid,
        renamed.is_curated,
        renamed.is_curated_raw is not null
            and renamed.is_curated is null as is_curated_invalid,
        renamed.extra,
        renamed._file,
        renamed._line,
        renamed._loaded_at
    from renamed
    left join categories
        on renamed.category_key = categories.raw_key
)

select * from unified
