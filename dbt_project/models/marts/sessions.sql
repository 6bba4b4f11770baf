with

events as (
    select * from {{ ref('events') }}
),

aggregated as (
    select
        session_id,
        -- the person of the session's last identified event (a login can happen mid-session)
        arg_max(person_id, occurred_at) filter (where person_id is not null) as person_id,
        arg_max(user_id, occurred_at) filter (where user_id is not null) as user_id,
        arg_min(anonymous_id, occurred_at) filter (where anonymous_id is not null)
            as anonymous_id,
        bool_or(is_session_derived) as is_session_derived,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as n_events,
        count(case when event_type = 'view_product' then 1 end) as n_product_views,
        count(case when event_type = 'add_to_cart' then 1 end) as n_cart_adds,
        count(case when event_type = 'purchase' then 1 end) as n_purchases,
        coalesce(sum(case when event_type = 'purchase' then value end), 0) as revenue,
        -- the first known context of the session
        arg_min(device_type, occurred_at) filter (where device_type is not null) as device_type,
        arg_min(os, occurred_at) filter (where os is not null) as os,
        arg_min(geo_country, occurred_at) filter (where geo_country is not null) as geo_country,
        arg_min(daypart, occurred_at) as daypart
    from events
    group by session_id
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
        {{ dbt.datediff('started_at', 'ended_at', 'second') }} as duration_seconds,
        n_events,
        n_product_views,
        n_cart_adds,
        n_purchases,
        n_purchases > 0 as has_purchase,
        revenue,
        device_type,
        os,
        geo_country,
        daypart
    from aggregated
)

select * from final
