{#-
    One row per usable interaction (about 11.7M at L): what the recommenders and
    user_category_affinity read, no more (the event and session ids cost more to write than
    all the rest).

    Incremental, per person. A person's rows depend only on their events up to the as-of time
    (and the weights of config.interaction_weights), and int_person_activity recomputes a
    person exactly when those may have changed: new, rewritten or re-attributed events, a
    merge or split, events the moved as-of time now reaches (everyone when it went back). So
    a run recomputes the people int_person_activity recomputed since this table was last
    built (its `_built_at`), and deletes the rows of people it no longer has (a post-hook
    removes the marker rows of people left without interactions). A changed weight or model
    SQL rebuilds the event chain, this included (dagster_project/incremental.py); erasure
    deletes the erased people's rows like every table's.
-#}
-- depends_on: {{ ref('int_person_activity') }}
{{ config(
    post_hook=[
        "{% if is_incremental() %}delete from {{ this }} where item_id is null{% endif %}",
    ],
) }}

{%- set built_watermark = stored_watermark('_built_at') %}

with

events as not materialized (
    select
        person_id,
        item_id,
        event_type,
        value,
        occurred_at
    from {{ ref('events') }}
    where person_id is not null
        and item_id is not null
),

interaction_weights as (
    select * from {{ ref('stg_config__interaction_weights') }}
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

{% if is_incremental() %}
activity as (
    select person_id, _built_at from {{ ref('int_person_activity') }}
),

touched as (
    select person_id
    from activity
    where _built_at > timestamp '{{ built_watermark }}'

    union

    -- people gone from int_person_activity (left without events, merged away)
    select stored.person_id
    from (select distinct person_id from {{ this }}) as stored
    anti join activity
        on stored.person_id = activity.person_id
),
{% endif %}

scoped as (
    {{ of_touched_people('events') }}
),

weighted as (
    select
        scoped.person_id,
        scoped.item_id,
        scoped.event_type,
        -- a rating counts by its value; every other type by its configured weight
        case
            when scoped.event_type = 'rate' then scoped.value * interaction_weights.weight
            else interaction_weights.weight
        end as weight,
        scoped.occurred_at
    from scoped
    inner join interaction_weights
        on scoped.event_type = interaction_weights.event_type
    cross join run_settings
    where scoped.occurred_at <= run_settings.as_of
),

usable as (
    select
        person_id,
        item_id,
        event_type,
        weight,
        occurred_at,
        {{ _built_at() }} as _built_at
    from weighted
    where weight is not null
)

select * from usable
{%- if is_incremental() %}

union all

-- a recomputed person left without interactions: the post-hook deletes this marker row
select touched.person_id, null, null, null, null, {{ _built_at() }}
from touched
anti join usable
    on touched.person_id = usable.person_id
{%- endif %}
