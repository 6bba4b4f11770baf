{#- Kept between builds, its rows by origin (macros/identity_graph.sql): a night adds the login
    stitches of the events deduplicated since the last build that are not edges yet, and the
    links of the records rebuilt since (the pre-hook deletes their old ones and those of the
    records gone). -#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_unless_fingerprint('edges') }}",
) }}

{%- set events_fingerprint = identity_graph_fingerprint('events') %}
{%- set profiles_fingerprint = identity_graph_fingerprint('profiles') %}
{%- set appending = stored_origin_current('events', events_fingerprint) %}
{%- set profiles = profiles_state() %}
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

events as not materialized (
    select * from {{ ref('int_events_deduplicated') }}
),

-- the events deduplicated since the last build (every event otherwise): a literal bound, so
-- zone maps skip the older blocks
events_since as (
    select * from events
    {%- if appending %}
    where _deduplicated_at > timestamp '{{ events_watermark }}'
    {%- endif %}
),

junk_values as (
    select * from {{ ref('stg_config__identity_junk_values') }}
),

candidate_links as (
    {%- if profiles_mode != 'none' %}
    select
        'record_id' as type_a,
        profiles.source_system as source_system_a,
        profiles.record_id as identifier_a,
        'user_id' as type_b,
        profiles.user_id as identifier_b,
        'profile_user_id' as method,
        'profiles' as _origin
    from profiles
    where profiles.user_id is not null

    union all

    select
        'record_id' as type_a,
        profiles.source_system as source_system_a,
        profiles.record_id as identifier_a,
        'email_token' as type_b,
        profiles.email_token as identifier_b,
        'email' as method,
        'profiles' as _origin
    from profiles
    where profiles.email_token is not null

    union all

    -- the same phone number (digits only before tokenizing) across systems
    select
        'record_id' as type_a,
        profiles.source_system as source_system_a,
        profiles.record_id as identifier_a,
        'phone_token' as type_b,
        profiles.phone_token as identifier_b,
        'phone' as method,
        'profiles' as _origin
    from profiles
    where profiles.phone_token is not null

    union all
    {%- endif %}

    -- an event carrying both a device and a user id: the device logged in as that user
    select distinct
        'anonymous_id' as type_a,
        null::varchar as source_system_a,
        events_since.anonymous_id as identifier_a,
        'user_id' as type_b,
        events_since.user_id as identifier_b,
        'login_stitch' as method,
        'events' as _origin
    from events_since
    where events_since.anonymous_id is not null
        and events_since.user_id is not null
),

without_junk as (
    -- a junk value on either side never makes an edge
    select candidate_links.*
    from candidate_links
    left join junk_values as junk_a
        on candidate_links.type_a <> 'record_id'
        and lower(candidate_links.identifier_a) = junk_a.junk_value
    left join junk_values as junk_b
        on lower(candidate_links.identifier_b) = junk_b.junk_value
    where junk_a.junk_value is null
        and junk_b.junk_value is null
),

keyed as (
    select distinct
        {{ identity_node_key('type_a', 'source_system_a', 'identifier_a') }} as node_key_a,
        {{ identity_node_key('type_b', 'null', 'identifier_b') }} as node_key_b,
        method,
        cast(1.0 as double) as match_probability,
        _origin
    from without_junk
),

final as (
    select
        keyed.*,
        {{ identity_graph_bookkeeping('keyed', events_fingerprint, profiles_fingerprint, profiles) }}
    from keyed
    {%- if appending %}
    -- stored before (tonight's profile links replace rows the pre-hook deleted)
    anti join {{ this }} as stored
        on keyed.node_key_a = stored.node_key_a
        and keyed.node_key_b = stored.node_key_b
        and keyed.method = stored.method
    {%- endif %}
)

select * from final
