with

people as (
    select * from {{ ref('user_profiles') }}
),

events as (
    select * from {{ ref('events') }}
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

sessions_of_people as (
    -- features see nothing after the as-of time (historical runs). Per person and session
    -- first, then per person: a `count(distinct session_id)` per person sorts every person's
    -- sessions.
    select
        events.person_id,
        events.session_id,
        max(events.occurred_at) as last_event_at,
        count(*) as n_events,
        count(case when events.event_type = 'view_product' then 1 end) as n_product_views,
        count(case when events.event_type = 'add_to_cart' then 1 end) as n_cart_adds,
        count(case when events.event_type = 'purchase' then 1 end) as frequency,
        sum(case when events.event_type = 'purchase' then events.value end) as monetary,
        count(case when events.device_type = 'mobile' then 1 end) as n_events_mobile,
        count(case when events.device_type = 'desktop' then 1 end) as n_events_desktop,
        count(case when events.device_type = 'tablet' then 1 end) as n_events_tablet,
        count(case when events.daypart = 'morning' then 1 end) as n_events_morning,
        count(case when events.daypart = 'afternoon' then 1 end) as n_events_afternoon,
        count(case when events.daypart = 'evening' then 1 end) as n_events_evening,
        count(case when events.daypart = 'night' then 1 end) as n_events_night
    from events
    cross join run_settings
    where events.person_id is not null
        and events.occurred_at <= run_settings.as_of
    group by events.person_id, events.session_id
),

behavior as (
    select
        person_id,
        max(last_event_at) as last_event_at,
        cast(sum(n_events) as bigint) as n_events,
        count(session_id) as n_sessions,
        cast(sum(n_product_views) as bigint) as n_product_views,
        cast(sum(n_cart_adds) as bigint) as n_cart_adds,
        cast(sum(frequency) as bigint) as frequency,
        coalesce(sum(monetary), 0) as monetary,
        {%- for bucket in [
            'mobile', 'desktop', 'tablet', 'morning', 'afternoon', 'evening', 'night',
        ] %}
        cast(sum(n_events_{{ bucket }}) as bigint) as n_events_{{ bucket }}{{ ',' if not loop.last }}
        {%- endfor %}
    from sessions_of_people
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
