{#- A view: marts.events is the one stored copy of the identified events, and every model
    downstream reads that table (a second 17 M-row copy here cost about a minute at L). -#}

with

events as (
    select * from {{ ref('int_events_enriched') }}
),

identity_map as (
    select * from {{ ref('identity_map') }}
),

people_by_user_id as (
    select
        identifier as user_id,
        min(person_id) as person_id
    from identity_map
    where identifier_type = 'user_id'
    group by identifier
),

people_by_anonymous_id as (
    select
        identifier as anonymous_id,
        min(person_id) as person_id
    from identity_map
    where identifier_type = 'anonymous_id'
    group by identifier
),

identified as (
    -- the user's person when the event names a user, else the device's person
    select
        coalesce(people_by_user_id.person_id, people_by_anonymous_id.person_id) as person_id,
        events.*
    from events
    left join people_by_user_id
        on events.user_id = people_by_user_id.user_id
    left join people_by_anonymous_id
        on events.anonymous_id = people_by_anonymous_id.anonymous_id
)

select * from identified
