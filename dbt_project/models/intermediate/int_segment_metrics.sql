{{ config(materialized='table') }}

{#- Per-person metrics that trigger segments (segments.yaml) are written against. Every metric is
    a double so the trigger model can compare them uniformly; a new metric added here becomes
    usable in segments.yaml at once (add it to the accepted values in the yml too). -#}

with

-- Not materialized: DuckDB would otherwise materialize a CTE read twice (through
-- events_until_as_of below), every column of every event (at 17 M events: 142 s against 15 s).
events as not materialized (
    select * from {{ ref('events') }}
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

-- Read twice below: not materialized, so each reader scans only the columns it needs (a
-- materialized copy of every column of every event cost most of this model's time).
events_until_as_of as not materialized (
    select
        events.person_id,
        events.session_id,
        events.item_id,
        events.event_type,
        events.occurred_at,
        events.value
    from events
    cross join run_settings
    where events.person_id is not null
        and events.occurred_at <= run_settings.as_of
),

product_views_per_session as (
    select
        person_id,
        session_id,
        item_id,
        count(*) as n_views
    from events_until_as_of
    where event_type = 'view_product'
        and item_id is not null
    group by person_id, session_id, item_id
),

most_viewed as (
    select
        person_id,
        max(n_views) as max_same_product_views_in_session
    from product_views_per_session
    group by person_id
),

-- One pass over the events, per person and session; everything per person is summed from these
-- rows (a few per person) rather than from the events again.
sessions_of_people as (
    select
        person_id,
        session_id,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        max(case when event_type = 'purchase' then occurred_at end) as last_purchase_at,
        count(*) as n_events,
        count(case when event_type = 'view_product' then 1 end) as n_product_views,
        count(case when event_type = 'add_to_cart' then 1 end) as n_cart_adds,
        count(case when event_type = 'purchase' then 1 end) as n_purchases,
        sum(case when event_type = 'purchase' then value end) as purchase_value
    from events_until_as_of
    group by person_id, session_id
),

abandoned_carts as (
    select
        person_id,
        count(*) as n_abandoned_carts,
        max(ended_at) as last_abandoned_at
    from sessions_of_people
    where n_cart_adds > 0
        and n_purchases = 0
    group by person_id
),

behavior as (
    select
        person_id,
        min(started_at) as first_event_at,
        max(ended_at) as last_event_at,
        max(last_purchase_at) as last_purchase_at,
        cast(sum(n_events) as bigint) as n_events,
        count(session_id) as n_sessions,
        cast(sum(n_product_views) as bigint) as n_product_views,
        cast(sum(n_cart_adds) as bigint) as n_cart_adds,
        cast(sum(n_purchases) as bigint) as frequency,
        coalesce(sum(purchase_value), 0) as monetary
    from sessions_of_people
    group by person_id
),

rfm_scored as (
    -- quintiles among buyers by cumulative share: ties share a score (deterministic)
    select
        person_id,
        ceil(5 * cume_dist() over (order by last_purchase_at)) as r_score,
        ceil(5 * cume_dist() over (order by frequency)) as f_score,
        ceil(5 * cume_dist() over (order by monetary)) as m_score
    from behavior
    where frequency > 0
),

final as (
    select
        behavior.person_id,
        cast(coalesce(most_viewed.max_same_product_views_in_session, 0) as double)
            as max_same_product_views_in_session,
        cast(behavior.n_sessions as double) as n_sessions,
        cast(behavior.n_events as double) as n_events,
        cast(behavior.n_product_views as double) as n_product_views,
        cast(behavior.n_cart_adds as double) as n_cart_adds,
        cast(coalesce(abandoned_carts.n_abandoned_carts, 0) as double) as n_abandoned_carts,
        cast({{ days_between('abandoned_carts.last_abandoned_at', 'run_settings.as_of') }} as double)
            as days_since_cart_abandonment,
        cast({{ days_between('behavior.first_event_at', 'run_settings.as_of') }} as double)
            as days_since_first_seen,
        cast({{ days_between('behavior.last_event_at', 'run_settings.as_of') }} as double)
            as recency_days,
        cast({{ days_between('behavior.last_purchase_at', 'run_settings.as_of') }} as double)
            as days_since_last_purchase,
        cast(behavior.frequency as double) as frequency,
        cast(behavior.monetary as double) as monetary,
        cast(rfm_scored.r_score as double) as r_score,
        cast(rfm_scored.f_score as double) as f_score,
        cast(rfm_scored.m_score as double) as m_score,
        cast(rfm_scored.r_score + rfm_scored.f_score + rfm_scored.m_score as double) as rfm_score,
        cast((rfm_scored.r_score + rfm_scored.f_score + rfm_scored.m_score - 3) / 12.0 as double)
            as rfm_scaled
    from behavior
    cross join run_settings
    left join most_viewed
        on behavior.person_id = most_viewed.person_id
    left join abandoned_carts
        on behavior.person_id = abandoned_carts.person_id
    left join rfm_scored
        on behavior.person_id = rfm_scored.person_id
)

select * from final
