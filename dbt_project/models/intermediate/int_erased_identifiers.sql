{{ config(materialized='table') }}

with

erasure_requests as (
    select * from {{ ref('stg_erasure__requests') }}
),

profiles as (
    select * from {{ ref('stg_profiles__profiles') }}
),

events as (
    select * from {{ ref('stg_events__events') }}
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

linkable_requests as (
    -- a junk value (`test@example.com`, `0`) is erased itself but links no further records
    select requested.*
    from requested
    left join junk_values
        on lower(requested.identifier) = junk_values.junk_value
    where junk_values.junk_value is null
),

linked_profiles as (
    select
        profiles.record_id,
        profiles.source_system,
        profiles.user_id,
        profiles.email_token,
        linkable_requests.requested_at
    from profiles
    inner join linkable_requests
        on linkable_requests.identifier_type = 'user_id'
        and profiles.user_id = linkable_requests.identifier

    union all

    select
        profiles.record_id,
        profiles.source_system,
        profiles.user_id,
        profiles.email_token,
        linkable_requests.requested_at
    from profiles
    inner join linkable_requests
        on linkable_requests.identifier_type = 'email_token'
        and profiles.email_token = linkable_requests.identifier
),

profile_identifiers as (
    select
        'record_id' as identifier_type,
        record_id as identifier,
        source_system,
        requested_at
    from linked_profiles

    union all

    select
        'user_id' as identifier_type,
        user_id as identifier,
        null as source_system,
        requested_at
    from linked_profiles
    where user_id is not null

    union all

    select
        'email_token' as identifier_type,
        email_token as identifier,
        null as source_system,
        requested_at
    from linked_profiles
    where email_token is not null
),

linkable_profile_identifiers as (
    -- the linked record itself is always erased; its junk user / email values are not
    select profile_identifiers.*
    from profile_identifiers
    left join junk_values
        on lower(profile_identifiers.identifier) = junk_values.junk_value
    where profile_identifiers.identifier_type = 'record_id'
        or junk_values.junk_value is null
),

erased_user_ids as (
    select
        identifier as user_id,
        min(requested_at) as requested_at
    from (
        select identifier, requested_at from linkable_requests
        where identifier_type = 'user_id'
        union all
        select identifier, requested_at from linkable_profile_identifiers
        where identifier_type = 'user_id'
    ) as user_ids
    group by identifier
),

stitched_anonymous_ids as (
    -- devices seen logged in as an erased user belong to that user
    select
        'anonymous_id' as identifier_type,
        events.anonymous_id as identifier,
        null as source_system,
        min(erased_user_ids.requested_at) as requested_at
    from events
    inner join erased_user_ids
        on events.user_id = erased_user_ids.user_id
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
        source_system,
        'profile' as erased_via,
        2 as via_priority,
        requested_at
    from linkable_profile_identifiers

    union all

    select
        identifier_type,
        identifier,
        source_system,
        'login_stitch' as erased_via,
        3 as via_priority,
        requested_at
    from stitched_anonymous_ids
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
