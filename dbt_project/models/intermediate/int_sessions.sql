{#-
    One row per session, incremental: a run re-aggregates the sessions of the events the
    identified-events model (re)wrote since this table was built (a newer `_identified_at`:
    new, re-sessionized, re-attributed or re-identified events), from all of their events, and
    deletes the sessions no event belongs to any more (re-sessionized into another one). The
    rest is kept: a session's row depends only on its events, and an event changes only by
    being rewritten (or erased, which deletes the session rows of the erased people too).
    At L a full build read the 17M events every night (6.4 s) for the few sessions of a day.
    `sessions` is the view of its published columns.
    The post-hook finds those sessions by `not exists` (an anti join), not `not in`: DuckDB
    builds `not in`'s null-aware join over the 17M events' session ids (at L, 1.4-2.7 s of a
    night instead of 0.8). A session row always has a session id, so the two delete the same.
-#}
{{ config(
    materialized='incremental',
    unique_key='session_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook=[
        "{% if is_incremental() %}delete from {{ this }} where not exists (select 1 from {{ ref('int_events_identified') }} as events where events.session_id = {{ this }}.session_id){% endif %}",
    ],
) }}

{%- set identified_watermark = stored_watermark('_identified_at') %}

with

events as not materialized (
    select * from {{ ref('int_events_identified') }}
),

{% if is_incremental() %}
touched as (
    select distinct session_id
    from events
    where _identified_at > timestamp '{{ identified_watermark }}'
),

scoped as (
    select events.*
    from events
    semi join touched
        on events.session_id = touched.session_id
),
{% else %}
scoped as (
    select * from events
),
{% endif %}

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
        arg_min(daypart, occurred_at) as daypart,
        max(_identified_at) as _identified_at
    from scoped
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
        daypart,
        _identified_at
    from aggregated
)

select * from final
