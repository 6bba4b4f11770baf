with

trigger_segments as (
    select * from {{ ref('int_segment_triggers') }}
),

people as (
    select * from {{ ref('user_profiles') }}
),

cluster_segments as (
    select * from {{ source('ml', 'user_segments') }}
),

propensity_segments as (
    select * from {{ source('ml', 'propensity_segments') }}
),

consenting_trigger_segments as (
    -- no segment of any kind for a person without personalization consent
    select trigger_segments.*
    from trigger_segments
    inner join people
        on trigger_segments.person_id = people.person_id
    where people.has_personalization_consent
),

unioned as (
    select person_id, segment_type, segment_id, segment_name, score
    from consenting_trigger_segments
    union all
    select person_id, segment_type, segment_id, segment_name, score from cluster_segments
    union all
    select person_id, segment_type, segment_id, segment_name, score from propensity_segments
),

final as (
    select
        cast(person_id as varchar) as person_id,
        cast(segment_type as varchar) as segment_type,
        cast(segment_id as varchar) as segment_id,
        cast(segment_name as varchar) as segment_name,
        cast(score as double) as score
    from unioned
)

select * from final
