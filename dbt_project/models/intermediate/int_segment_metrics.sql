{{ config(materialized='table') }}

{#- Per-person metrics that trigger segments (segments.yaml) are written against. Every metric is
    a double so the trigger model can compare them uniformly; a new metric added here becomes
    usable in segments.yaml at once (add it to the accepted values in the yml too). -#}

with

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

behavior as (
    -- the people with events up to the as-of time, and the sums of those events
    select
        person_id,
        max_same_product_views_in_session,
        n_abandoned_carts,
        last_abandoned_at,
        first_event_at,
        last_event_at,
        last_purchase_at,
        n_events,
        n_sessions,
        n_product_views,
        n_cart_adds,
        n_purchases as frequency,
        coalesce(purchase_value, 0) as monetary
    from {{ ref('int_person_activity') }}
    where n_events > 0
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
        cast(behavior.max_same_product_views_in_session as double)
            as max_same_product_views_in_session,
        cast(behavior.n_sessions as double) as n_sessions,
        cast(behavior.n_events as double) as n_events,
        cast(behavior.n_product_views as double) as n_product_views,
        cast(behavior.n_cart_adds as double) as n_cart_adds,
        cast(behavior.n_abandoned_carts as double) as n_abandoned_carts,
        cast({{ days_between('behavior.last_abandoned_at', 'run_settings.as_of') }} as double)
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
    left join rfm_scored
        on behavior.person_id = rfm_scored.person_id
)

select * from final
