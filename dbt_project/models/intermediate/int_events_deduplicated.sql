{{ config(materialized='table') }}

with

events as (
    select * from {{ ref('stg_events__events') }}
),

erased_identifiers as (
    select * from {{ ref('int_erased_identifiers') }}
),

erased_user_ids as (
    select distinct identifier as user_id
    from erased_identifiers
    where identifier_type = 'user_id'
),

erased_anonymous_ids as (
    select distinct identifier as anonymous_id
    from erased_identifiers
    where identifier_type = 'anonymous_id'
),

ranked as (
    select
        events.*,
        row_number() over (
            partition by event_id
            order by _loaded_at, _file, _line
        ) as delivery_number,
        count(*) over (partition by event_id) as n_deliveries
    from events
),

deduplicated as (
    -- the first delivery of an event wins; later re-deliveries are dropped
    select *
    from ranked
    where delivery_number = 1
),

retained as (
    select
        deduplicated.event_id,
        deduplicated.event_type,
        deduplicated.event_type_raw,
        deduplicated.occurred_at,
        deduplicated.timezone,
        deduplicated.user_id,
        deduplicated.anonymous_id,
        deduplicated.session_id,
        deduplicated.item_id,
        deduplicated.value,
        deduplicated.quantity,
        deduplicated.page_url,
        deduplicated.referrer,
        deduplicated.properties,
        deduplicated.extra,
        deduplicated.n_deliveries,
        deduplicated._file,
        deduplicated._line,
        deduplicated._loaded_at
    from deduplicated
    left join erased_user_ids
        on deduplicated.user_id = erased_user_ids.user_id
    left join erased_anonymous_ids
        on deduplicated.anonymous_id = erased_anonymous_ids.anonymous_id
    where erased_user_ids.user_id is null
        and erased_anonymous_ids.anonymous_id is null
)

select * from retained
