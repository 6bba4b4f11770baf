{#- A view of the published columns: int_events_identified is the one stored copy (built
    incrementally), and every model downstream reads the events through this view. Keep it a
    projection: a night's publish reads these columns straight from int_events_identified for
    the rows it rewrote (dagster_project/publish.py). -#}
{{ config(materialized='view') }}

with

events as (
    select * from {{ ref('int_events_identified') }}
),

final as (
    select
        event_id,
        event_type,
        event_type_raw,
        occurred_at,
        person_id,
        user_id,
        anonymous_id,
        session_id,
        is_session_derived,
        item_id,
        value,
        quantity,
        page_url,
        referrer,
        properties,
        device_type,
        os,
        browser,
        geo_country,
        geo_city,
        local_timezone,
        local_occurred_at,
        daypart,
        n_deliveries,
        extra
    from events
)

select * from final
