{#- A view of the published columns: int_sessions is the one stored copy (built
    incrementally). -#}
{{ config(materialized='view') }}

with

sessions as (
    select * from {{ ref('int_sessions') }}
),

final as (
    select
        session_id,
        person_id,
        user_id,
        anonymous_id,
        is_session_derived,
        started_at,
        ended_at,
        duration_seconds,
        n_events,
        n_product_views,
        n_cart_adds,
        n_purchases,
        has_purchase,
        revenue,
        device_type,
        os,
        geo_country,
        daypart
    from sessions
)

select * from final
