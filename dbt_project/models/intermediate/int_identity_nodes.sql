{#- Kept between builds, its rows by origin (macros/identity_graph.sql): a night adds the
    identifiers of the events deduplicated since the last build that are not nodes yet, and
    those of the records and consents rebuilt since; the pre-hook deletes the nodes no record
    or consent names any more. -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_unless_fingerprint('nodes') }}",
    post_hook="{{ keep_event_nodes() }}",
) }}

{%- set events_fingerprint = identity_graph_fingerprint('events') %}
{%- set profiles_fingerprint = identity_graph_fingerprint('profiles') %}
{%- set appending = stored_origin_current('events', events_fingerprint) %}
{%- set profiles = profiles_state(with_consents=true) %}
{%- set profiles_mode = profiles_rows_mode(profiles_fingerprint, profiles.state) %}
{%- set profiles_watermark = stored_profiles_watermark() if profiles_mode == 'changed' else none %}
{%- set events_watermark = stored_watermark('_events_watermark') if appending else '-infinity' %}

with

-- `not materialized`: read by several branches, DuckDB would materialize it, every column of
-- every row; inlined, each branch scans only the columns it needs.
profiles as not materialized (
    select * from {{ ref('int_profiles_deduplicated') }}
    {%- if profiles_watermark %}
    -- the records rebuilt since the last build (macros/identity_graph.sql)
    where _built_at > timestamp '{{ profiles_watermark }}'
    {%- endif %}
),

-- `not materialized`: DuckDB materializes a CTE that is read more than once, every column of
-- every row; inlined, each reader scans only the columns it needs (see int_segment_metrics).
events as not materialized (
    select * from {{ ref('int_events_deduplicated') }}
),

-- the events deduplicated since the last build (every event otherwise): a literal bound, so
-- zone maps skip the older blocks
events_since as not materialized (
    select * from events
    {%- if appending %}
    where _deduplicated_at > timestamp '{{ events_watermark }}'
    {%- endif %}
),

consents as (
    select * from {{ ref('int_consent_current') }}
    {%- if profiles_watermark %}
    where _built_at > timestamp '{{ profiles_watermark }}'
    {%- endif %}
),

junk_values as (
    select * from {{ ref('stg_config__identity_junk_values') }}
),

profile_identifiers as (
    {%- if profiles_mode != 'none' %}
    select
        'record_id' as identifier_type,
        record_id as identifier,
        source_system
    from profiles

    union all

    select
        'user_id' as identifier_type,
        user_id as identifier,
        null::varchar as source_system
    from profiles
    where user_id is not null

    union all

    -- linker-only: an email token joins records, it is not a person's identifier
    select
        'email_token' as identifier_type,
        email_token as identifier,
        null::varchar as source_system
    from profiles
    where email_token is not null

    union all

    select
        'phone_token' as identifier_type,
        phone_token as identifier,
        null::varchar as source_system
    from profiles
    where phone_token is not null

    union all

    select
        'user_id' as identifier_type,
        subject_id as identifier,
        null::varchar as source_system
    from consents
    where subject_type = 'user_id'
    {%- else %}
    select null::varchar as identifier_type, null::varchar as identifier,
        null::varchar as source_system
    where false
    {%- endif %}
),

event_identifiers as (
    -- distinct per branch: 17M events name about 2M users and devices
    select distinct
        'user_id' as identifier_type,
        user_id as identifier,
        null::varchar as source_system
    from events_since
    where user_id is not null

    union all

    select distinct
        'anonymous_id' as identifier_type,
        anonymous_id as identifier,
        null::varchar as source_system
    from events_since
    where anonymous_id is not null
),

-- the events' nodes stored before (an events node has no source system: its type and value
-- are its key)
stored_event_identifiers as not materialized (
    {%- if appending %}
    select identifier_type, identifier from {{ this }} where _origin = 'events'
    {%- else %}
    select null::varchar as identifier_type, null::varchar as identifier where false
    {%- endif %}
),

-- the profiles' nodes kept (the pre-hook deleted those no record or consent names)
stored_profile_identifiers as not materialized (
    {%- if profiles_mode == 'changed' %}
    select identifier_type, identifier, coalesce(source_system, '') as source_system_key
    from {{ this }}
    where _origin = 'profiles'
    {%- else %}
    select null::varchar as identifier_type, null::varchar as identifier,
        null::varchar as source_system_key
    where false
    {%- endif %}
),

distinct_identifiers as (
    select distinct
        event_identifiers.identifier_type,
        event_identifiers.identifier,
        event_identifiers.source_system,
        'events' as _origin
    from event_identifiers
    anti join stored_event_identifiers as stored
        on event_identifiers.identifier_type = stored.identifier_type
        and event_identifiers.identifier = stored.identifier

    union all

    -- a node the events name is theirs (macros/identity_graph.sql)
    select distinct
        profile_identifiers.identifier_type,
        profile_identifiers.identifier,
        profile_identifiers.source_system,
        'profiles' as _origin
    from profile_identifiers
    anti join event_identifiers
        on profile_identifiers.identifier_type = event_identifiers.identifier_type
        and profile_identifiers.identifier = event_identifiers.identifier
    anti join stored_event_identifiers as stored
        on profile_identifiers.identifier_type = stored.identifier_type
        and profile_identifiers.identifier = stored.identifier
    anti join stored_profile_identifiers as stored_profile
        on profile_identifiers.identifier_type = stored_profile.identifier_type
        and profile_identifiers.identifier = stored_profile.identifier
        and coalesce(profile_identifiers.source_system, '') = stored_profile.source_system_key
),

keyed as (
    select
        {{ identity_node_key('distinct_identifiers.identifier_type', 'distinct_identifiers.source_system', 'distinct_identifiers.identifier') }}
            as node_key,
        distinct_identifiers.identifier_type,
        distinct_identifiers.identifier,
        distinct_identifiers.source_system,
        -- junk record ids are still records; junk user / device / email values link nothing
        distinct_identifiers.identifier_type <> 'record_id'
            and junk_values.junk_value is not null as is_junk,
        distinct_identifiers._origin
    from distinct_identifiers
    left join junk_values
        on lower(distinct_identifiers.identifier) = junk_values.junk_value
),

final as (
    select
        keyed.*,
        {{ identity_graph_bookkeeping('keyed', events_fingerprint, profiles_fingerprint, profiles) }}
    from keyed
)

select * from final
