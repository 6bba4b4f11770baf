with

interaction_weights as (
    select * from {{ source('config', 'interaction_weights') }}
),

normalized as (
    select
        lower(trim(event_type)) as event_type,
        max(cast(weight as double)) as weight
    from interaction_weights
    where weight is not null
    group by lower(trim(event_type))
)

select * from normalized
