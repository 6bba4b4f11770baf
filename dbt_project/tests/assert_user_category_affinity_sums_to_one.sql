-- The affinities of every person sum to 1.
with

user_category_affinity as (
    select * from {{ ref('user_category_affinity') }}
),

per_person as (
    select
        person_id,
        sum(affinity) as total_affinity
    from user_category_affinity
    group by person_id
)

select * from per_person
where abs(total_affinity - 1) > 1e-9
