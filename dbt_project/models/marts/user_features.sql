with

people as (
    select * from {{ ref('user_profiles') }}
),

events as (
    select * from {{ ref('int_events_identified') }}
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

events_until_as_of as (
    -- features see nothing after the as-of time (historical runs)
    select events.*
    from events
    cross join run_settings
    where events.person_id is not null
        and events.occurred_at <= run_settings.as_of
),

behavior as (
    select
        person_id,
        max(occurred_at) as last_event_at,
        count(*) as n_events,
        count(distinct session_id) as n_sessions,
        count(case when event_type = 'view_product' then 1 end) as n_product_views,
        count(case when event_type = 'add_to_cart' then 1 end) as n_cart_adds,
        count(case when event_type = 'purchase' then 1 end) as frequency,
        coalesce(sum(case when event_type = 'purchase' then value end), 0) as monetary,
        count(case when device_type = 'mobile' then 1 end) as n_events_mobile,
        count(case when device_type = 'desktop' then 1 end) as n_events_desktop,
        count(case when device_type = 'tablet' then 1 end) as n_events_tablet,
        count(case when daypart = 'morning' then 1 end) as n_events_morning,
        count(case when daypart = 'afternoon' then 1 end) as n_events_afternoon,
        count(case when daypart = 'evening' then 1 end) as n_events_evening,
        count(case when daypart = 'night' then 1 end) as n_events_night
    from events_until_as_of
    group by person_id
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
