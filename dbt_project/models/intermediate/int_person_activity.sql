{#-
    One row per person with events: the sums of their events that user_profiles, user_features
    and int_segment_metrics read, so the 17M events are aggregated once a night, and only for
    the people whose events changed. Columns without a suffix count the events up to the as-of
    time (features see nothing after it); `*_all` count every event (the profile's activity).
    No column depends on the as-of time itself: the models downstream turn the timestamps into
    recency there, for everyone, from 1M rows instead of 17M.

    Incremental. A person's row depends only on their events, and an event reaches a person
    only through the person of its user_id or anonymous_id in identity_map
    (int_events_identified). A run recomputes, from all of their events:
    - the people of the events int_events_identified (re)wrote since this table was built
      (a newer `_identified_at`: new, re-sessionized or re-attributed events);
    - the people whose set of user_ids and anonymous_ids changed (a hash of the set,
      `_identifiers_hash`): a merge, split or erasure moves events from a person who may have
      no rewritten event left;
    - when the as-of time moved forward, the people with events between the two; a run whose
      as-of time is earlier than the stored one recomputes everyone (historical runs).
    A recomputed person without events is deleted (post-hook). Erasure deletes the erased
    people's rows like every table's; a rebuilt event chain rebuilds this too
    (dagster_project/incremental.py). `_built_at` says which build recomputed a row:
    int_interactions_weighted recomputes the same people after it.
-#}
{{ config(
    post_hook=[
        "{% if is_incremental() %}delete from {{ this }} where n_events_all = 0{% endif %}",
    ],
) }}

{%- set identified_watermark = stored_watermark('_identified_at') %}
{%- if is_incremental() and execute %}
    {%- set as_of_row = run_query(
        "select (select as_of from " ~ ref('int_run_settings_resolved') ~ ")::varchar, "
        ~ "(select max(_as_of) from " ~ this ~ ")::varchar, "
        ~ "(select as_of from " ~ ref('int_run_settings_resolved') ~ ") "
        ~ "< (select max(_as_of) from " ~ this ~ ")"
    ).rows[0] %}
    {%- set current_as_of, stored_as_of, as_of_went_back = as_of_row[0], as_of_row[1], as_of_row[2] %}
{%- endif %}

with

events as not materialized (
    select
        person_id,
        session_id,
        item_id,
        event_type,
        occurred_at,
        value,
        device_type,
        daypart,
        _identified_at
    from {{ ref('int_events_identified') }}
    where person_id is not null
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

identifiers as (
    -- what decides which events are a person's (the user's person, else the device's)
    select
        person_id,
        bit_xor(hash(identifier_type, identifier)) as _identifiers_hash
    from {{ ref('identity_map') }}
    where identifier_type in ('user_id', 'anonymous_id')
    group by person_id
),

{% if is_incremental() %}
touched as (
    {%- if as_of_went_back %}
    -- everyone: a stored row may count events the as-of time no longer reaches
    select person_id from identifiers

    union

    select person_id from {{ this }}
    {%- else %}
    select person_id
    from events
    where _identified_at > timestamp '{{ identified_watermark }}'

    union

    select coalesce(identifiers.person_id, stored.person_id)
    from identifiers
    full outer join {{ this }} as stored
        on identifiers.person_id = stored.person_id
    where identifiers._identifiers_hash is distinct from stored._identifiers_hash
    {%- if stored_as_of is not none and current_as_of is not none
        and current_as_of != stored_as_of %}

    union

    -- events the as-of time now reaches
    select person_id
    from events
    where occurred_at > timestamp '{{ stored_as_of }}'
        and occurred_at <= timestamp '{{ current_as_of }}'
    {%- endif %}
    {%- endif %}
),
{% endif %}

scoped as (
    {{ of_touched_people('events') }}
),

until_as_of as not materialized (
    select scoped.*
    from scoped
    cross join run_settings
    where scoped.occurred_at <= run_settings.as_of
),

product_views_per_session as (
    select
        person_id,
        session_id,
        item_id,
        count(*) as n_views
    from until_as_of
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
-- rows (a few per person): a `count(distinct session_id)` per person sorts every person's
-- sessions.
sessions_of_people as (
    select
        scoped.person_id,
        scoped.session_id,
        min(scoped.occurred_at) as first_seen_at,
        max(scoped.occurred_at) as last_seen_at,
        count(*) as n_events_all,
        max(scoped._identified_at) as _identified_at,
        {%- set until = 'scoped.occurred_at <= run_settings.as_of' %}
        min(scoped.occurred_at) filter (where {{ until }}) as started_at,
        max(scoped.occurred_at) filter (where {{ until }}) as ended_at,
        max(scoped.occurred_at) filter (where {{ until }} and scoped.event_type = 'purchase')
            as last_purchase_at,
        count(*) filter (where {{ until }}) as n_events,
        count(*) filter (where {{ until }} and scoped.event_type = 'view_product')
            as n_product_views,
        count(*) filter (where {{ until }} and scoped.event_type = 'add_to_cart') as n_cart_adds,
        count(*) filter (where {{ until }} and scoped.event_type = 'purchase') as n_purchases,
        sum(scoped.value) filter (where {{ until }} and scoped.event_type = 'purchase')
            as purchase_value,
        {%- for column, bucket in [
            ('device_type', 'mobile'), ('device_type', 'desktop'), ('device_type', 'tablet'),
            ('daypart', 'morning'), ('daypart', 'afternoon'), ('daypart', 'evening'),
            ('daypart', 'night'),
        ] %}
        count(*) filter (where {{ until }} and scoped.{{ column }} = '{{ bucket }}')
            as n_events_{{ bucket }}{{ ',' if not loop.last }}
        {%- endfor %}
    from scoped
    cross join run_settings
    group by scoped.person_id, scoped.session_id
),

people as (
    select
        person_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        cast(sum(n_events_all) as bigint) as n_events_all,
        min(started_at) as first_event_at,
        max(ended_at) as last_event_at,
        max(last_purchase_at) as last_purchase_at,
        cast(sum(n_events) as bigint) as n_events,
        count(session_id) filter (where n_events > 0) as n_sessions,
        cast(sum(n_product_views) as bigint) as n_product_views,
        cast(sum(n_cart_adds) as bigint) as n_cart_adds,
        cast(sum(n_purchases) as bigint) as n_purchases,
        sum(purchase_value) as purchase_value,
        {%- for bucket in ['mobile', 'desktop', 'tablet', 'morning', 'afternoon', 'evening', 'night'] %}
        cast(sum(n_events_{{ bucket }}) as bigint) as n_events_{{ bucket }},
        {%- endfor %}
        -- sessions (up to the as-of time) with a cart add and no purchase
        count(*) filter (where n_cart_adds > 0 and n_purchases = 0) as n_abandoned_carts,
        max(ended_at) filter (where n_cart_adds > 0 and n_purchases = 0) as last_abandoned_at,
        max(_identified_at) as _identified_at
    from sessions_of_people
    group by person_id
),

final as (
    select
        people.person_id,
        people.first_seen_at,
        people.last_seen_at,
        people.n_events_all,
        people.first_event_at,
        people.last_event_at,
        people.last_purchase_at,
        people.n_events,
        people.n_sessions,
        people.n_product_views,
        people.n_cart_adds,
        people.n_purchases,
        people.purchase_value,
        {%- for bucket in ['mobile', 'desktop', 'tablet', 'morning', 'afternoon', 'evening', 'night'] %}
        people.n_events_{{ bucket }},
        {%- endfor %}
        coalesce(most_viewed.max_same_product_views_in_session, 0)
            as max_same_product_views_in_session,
        people.n_abandoned_carts,
        people.last_abandoned_at,
        identifiers._identifiers_hash,
        run_settings.as_of as _as_of,
        people._identified_at,
        {{ _built_at() }} as _built_at
    from people
    cross join run_settings
    left join most_viewed
        on people.person_id = most_viewed.person_id
    left join identifiers
        on people.person_id = identifiers.person_id
    {%- if is_incremental() %}

    union all

    -- a recomputed person left without events: the post-hook deletes the stored row
    select
        touched.person_id,
        null, null, 0, null, null, null, 0, 0, 0, 0, 0, null,
        0, 0, 0, 0, 0, 0, 0,
        0, 0, null, null, null, null, {{ _built_at() }}
    from touched
    anti join people
        on touched.person_id = people.person_id
    {%- endif %}
)

select * from final
