{{ config(materialized='table') }}

with

events as (
    select * from {{ ref('events') }}
),

interaction_weights as (
    select * from {{ ref('stg_config__interaction_weights') }}
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

-- What the recommenders and user_category_affinity read, no more: one row per interaction
-- (about 10M at L), and the event and session ids cost more to write than all the rest.
weighted as (
    select
        events.person_id,
        events.item_id,
        events.event_type,
        -- a rating counts by its value; every other type by its configured weight
        case
            when events.event_type = 'rate' then events.value * interaction_weights.weight
            else interaction_weights.weight
        end as weight,
        events.occurred_at
    from events
    inner join interaction_weights
        on events.event_type = interaction_weights.event_type
    cross join run_settings
    where events.person_id is not null
        and events.item_id is not null
        and events.occurred_at <= run_settings.as_of
),

usable as (
    select *
    from weighted
    where weight is not null
)

select * from usable
