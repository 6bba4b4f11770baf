{#- A table: the recommendations and experiments steps and this model's tests read it, and as a
    view each read cost 3-5 s at 1M people. -#}
{{ config(materialized='table') }}

with

-- `not materialized`: read by several branches, DuckDB would materialize it, every column of
-- every row; inlined, each branch scans only the columns it needs.
identity_map as not materialized (
    select * from {{ ref('identity_map') }}
),

profiles as (
    select * from {{ ref('int_profiles_deduplicated') }}
),

consents as (
    select * from {{ ref('int_consent_current') }}
),

junk_values as (
    select * from {{ ref('stg_config__identity_junk_values') }}
),

people as (
    select distinct person_id
    from identity_map
),

person_subjects as (
    -- what a consent can name, as in user_profiles: the person's user ids and the emails of
    -- their records (a junk email is nobody's). `union all`, as there: a subject named twice
    -- ranks two equal rows
    select
        person_id,
        'user_id' as subject_type,
        identifier as subject_id
    from identity_map
    where identifier_type = 'user_id'

    union all

    select
        identity_map.person_id,
        'email_token' as subject_type,
        profiles.email_token as subject_id
    from identity_map
    inner join profiles
        on identity_map.identifier_type = 'record_id'
        and identity_map.identifier = profiles.record_id
        and coalesce(identity_map.source_system, '') = coalesce(profiles.source_system, '')
    left join junk_values
        on profiles.email_token = junk_values.junk_value
    where profiles.email_token is not null
        and junk_values.junk_value is null
),

ranked_analytics_consents as (
    select
        person_subjects.person_id,
        consents.is_granted,
        consents.recorded_at,
        -- the latest decision wins; on a tie a withdrawal beats a grant
        row_number() over (
            partition by person_subjects.person_id
            order by consents.recorded_at desc nulls last, consents.is_granted
        ) as recency_rank
    from person_subjects
    inner join consents
        on person_subjects.subject_type = consents.subject_type
        and person_subjects.subject_id = consents.subject_id
    where consents.purpose = 'analytics'
),

analytics_consents as (
    select
        person_id,
        is_granted,
        recorded_at
    from ranked_analytics_consents
    where recency_rank = 1
),

final as (
    select
        people.person_id,
        coalesce(
            analytics_consents.is_granted,
            {{ var('consent_default_analytics') }}
        ) as has_analytics_consent,
        analytics_consents.recorded_at as analytics_consent_recorded_at
    from people
    left join analytics_consents
        on people.person_id = analytics_consents.person_id
)

select * from final
