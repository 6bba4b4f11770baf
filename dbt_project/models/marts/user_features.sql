with

people as (
    select * from {{ ref('user_profiles') }}
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

behavior as (
    -- features see nothing after the as-of time (historical runs): the columns without a
    -- suffix count the events up to it
    select
        person_id,
        last_event_at,
        n_events,
        n_sessions,
        n_product_views,
        n_cart_adds,
        n_purchases as frequency,
        coalesce(purchase_value, 0) as monetary,
        n_events_mobile,
        n_events_desktop,
        n_events_tablet,
        n_events_morning,
        n_events_afternoon,
        n_events_evening,
        n_events_night
    from {{ ref('int_person_activity') }}
    where n_events > 0
),

final as (
    select
        people.person_id,
        {{ days_between('behavior.last_event_at', 'run_settings.as_of') }} as recency_days,
        coalesce(behavior.frequency, 0) as frequency,
        cast(coalesce(behavior.monetary, 0) as double) as monetary,
        coalesce(behavior.n_events, 0) as n_events,
        coalesce(behavior.n_sessions, 0) as n_sessions,
        coalesce(behavior.n_product_views, 0) as n_product_views,
        coalesce(behavior.n_cart_adds, 0) as n_cart_adds,
        coalesce(behavior.n_events * 1.0 / nullif(behavior.n_sessions, 0), 0)
            as avg_session_events,
        {%- for share in [
            'device_mobile', 'device_desktop', 'device_tablet',
            'daypart_morning', 'daypart_afternoon', 'daypart_evening', 'daypart_night',
        ] %}
        coalesce(
            behavior.n_events_{{ share.split('_', 1)[1] }} * 1.0 / nullif(behavior.n_events, 0),
            0
        ) as share_{{ share }},
        {%- endfor %}
        people.age,
        people.has_personalization_consent
    from people
    cross join run_settings
    left join behavior
        on people.person_id = behavior.person_id
)

select * from final
