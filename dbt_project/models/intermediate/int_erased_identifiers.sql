{{ config(materialized='table') }}

{#-
    Everything that identifies a person who asked to be erased: the requested user id / email
    token, every profile record reachable from them through shared user ids and email tokens,
    and the devices seen logged in as one of their user ids. Junk values are erased themselves
    but link nothing further.

    A safety net for requests dbt sees before ingest enforced them. In the pipeline, ingest
    moves every request into audit.erasure_registry (tokens) and purges raw.erasure, so this
    model is empty there; the whole person, including records that only Splink links to the
    request, is resolved and erased by the identity step (dagster_project/identity/erasure.py)
    before anyone is linked.
-#}

with recursive

erasure_requests as (
    select * from {{ ref('stg_erasure__requests') }}
),

-- Without requests (every pipeline run) nothing below reads the profiles or events: the
-- guard skips both scans, 3-25 s at 17M events.
profiles as (
    select * from {{ ref('stg_profiles__profiles') }}
    where exists (select 1 from erasure_requests)
),

events as (
    select * from {{ ref('stg_events__events') }}
    where exists (select 1 from erasure_requests)
),

junk_values as (
    select * from {{ ref('stg_config__identity_junk_values') }}
),

requested as (
    select
        'user_id' as identifier_type,
        user_id as identifier,
        requested_at
    from erasure_requests
    where user_id is not null

    union all

    select
        'email_token' as identifier_type,
        email_token as identifier,
        requested_at
    from erasure_requests
    where email_token is not null
),

linkable_profiles as (
    -- profile values that can link records: present and not junk
    select
        profiles.record_id,
        profiles.source_system,
        case when junk_users.junk_value is null then profiles.user_id end as user_id,
        case when junk_emails.junk_value is null then profiles.email_token end as email_token
    from profiles
    left join junk_values as junk_users
        on lower(profiles.user_id) = junk_users.junk_value
    left join junk_values as junk_emails
        on lower(profiles.email_token) = junk_emails.junk_value
),

profile_links as (
    select
        'user_id' as from_type,
        user_id as from_identifier,
        'email_token' as to_type,
        email_token as to_identifier
    from linkable_profiles
    where user_id is not null
        and email_token is not null

    union all

    select
        'email_token' as from_type,
        email_token as from_identifier,
        'user_id' as to_type,
        user_id as to_identifier
    from linkable_profiles
    where user_id is not null
        and email_token is not null
),

linkable_requests as (
    select requested.*
    from requested
    left join junk_values
        on lower(requested.identifier) = junk_values.junk_value
    where junk_values.junk_value is null
),

reachable_identifiers (identifier_type, identifier, requested_at) as (
    select
        identifier_type,
        identifier,
        requested_at
    from linkable_requests

    union

    select
        profile_links.to_type,
        profile_links.to_identifier,
        reachable_identifiers.requested_at
    from reachable_identifiers
    inner join profile_links
        on reachable_identifiers.identifier_type = profile_links.from_type
        and reachable_identifiers.identifier = profile_links.from_identifier
),

reachable_records as (
    select
        'record_id' as identifier_type,
        linkable_profiles.record_id as identifier,
        linkable_profiles.source_system,
        min(reachable_identifiers.requested_at) as requested_at
    from linkable_profiles
    inner join reachable_identifiers
        on (
            reachable_identifiers.identifier_type = 'user_id'
            and linkable_profiles.user_id = reachable_identifiers.identifier
        )
        or (
            reachable_identifiers.identifier_type = 'email_token'
            and linkable_profiles.email_token = reachable_identifiers.identifier
        )
    group by linkable_profiles.record_id, linkable_profiles.source_system
),

stitched_devices as (
    -- devices seen logged in as an erased user belong to that user
    select
        'anonymous_id' as identifier_type,
        events.anonymous_id as identifier,
        min(reachable_identifiers.requested_at) as requested_at
    from events
    inner join reachable_identifiers
        on reachable_identifiers.identifier_type = 'user_id'
        and events.user_id = reachable_identifiers.identifier
    left join junk_values
        on lower(events.anonymous_id) = junk_values.junk_value
    where events.anonymous_id is not null
        and junk_values.junk_value is null
    group by events.anonymous_id
),

unioned as (
    select
        identifier_type,
        identifier,
        cast(null as varchar) as source_system,
        'request' as erased_via,
        1 as via_priority,
        requested_at
    from requested

    union all

    select
        identifier_type,
        identifier,
        cast(null as varchar) as source_system,
        'profile_link' as erased_via,
        2 as via_priority,
        requested_at
    from reachable_identifiers

    union all

    select
        identifier_type,
        identifier,
        source_system,
        'profile_link' as erased_via,
        2 as via_priority,
        requested_at
    from reachable_records

    union all

    select
        identifier_type,
        identifier,
        cast(null as varchar) as source_system,
        'login_stitch' as erased_via,
        3 as via_priority,
        requested_at
    from stitched_devices
),

collapsed as (
    select
        identifier_type,
        identifier,
        source_system,
        arg_min(erased_via, via_priority) as erased_via,
        min(requested_at) as requested_at
    from unioned
    group by identifier_type, identifier, source_system
)

select * from collapsed
