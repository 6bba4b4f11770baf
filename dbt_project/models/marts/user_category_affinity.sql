with

interactions as (
    select * from {{ ref('int_interactions_weighted') }}
),

items as (
    select * from {{ ref('items') }}
),

by_category as (
    select
        interactions.person_id,
        items.category,
        count(*) as interactions,
        sum(interactions.weight) as weighted_interactions
    from interactions
    inner join items
        on interactions.item_id = items.item_id
    where items.category is not null
    group by interactions.person_id, items.category
),

positive as (
    -- negative signals (removals) can cancel a category, never push it below zero
    select *
    from by_category
    where weighted_interactions > 0
),

shared as (
    select
        person_id,
        category,
        interactions,
        weighted_interactions,
        weighted_interactions / sum(weighted_interactions) over (partition by person_id)
            as affinity
    from positive
)

select * from shared
