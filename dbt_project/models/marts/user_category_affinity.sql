{#-
    Per person and category: the person's interactions with the category's items and their
    share of the person's weighted interactions.

    Incremental, per person: a person's rows depend on their interactions and on the items'
    categories. A run recomputes the people whose interactions int_interactions_weighted
    recomputed since this table was last built: those int_person_activity recomputed since
    (`_built_at`), and those it no longer has; everyone when the items' categories changed
    (`_items_hash`, a hash of every item's category) or on a full refresh. A post-hook
    removes the marker rows of recomputed people left without a row.
-#}
-- depends_on: {{ ref('int_interactions_weighted') }}
-- depends_on: {{ ref('int_person_activity') }}
{{ config(
    materialized='incremental',
    unique_key='person_id',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook=[
        "{% if is_incremental() %}delete from {{ this }} where category is null{% endif %}",
    ],
) }}

{%- set items_hash_sql -%}
    select hash(count(*), coalesce(bit_xor(hash(item_id, category)), 0),
        coalesce(sum(hash(item_id, category)::hugeint), 0))
    from {{ ref('items') }}
{%- endset %}
{%- set built_watermark = stored_watermark('_built_at') %}
{%- set everyone = true %}
{%- if is_incremental() and execute %}
    {%- set everyone = run_query(
        "select (" ~ items_hash_sql ~ ") is distinct from (select max(_items_hash) from "
        ~ this ~ ")"
    ).rows[0][0] %}
{%- endif %}

with

interactions as not materialized (
    select person_id, item_id, weight
    from {{ ref('int_interactions_weighted') }}
),

items as (
    select * from {{ ref('items') }}
),

{% if is_incremental() %}
touched as (
    {%- if everyone %}
    select person_id from interactions

    union

    select person_id from {{ this }}
    {%- else %}
    -- int_interactions_weighted recomputes exactly these people (see there)
    select person_id
    from {{ ref('int_person_activity') }}
    where _built_at > timestamp '{{ built_watermark }}'

    union

    -- people gone from int_person_activity
    select stored.person_id
    from (select distinct person_id from {{ this }}) as stored
    anti join {{ ref('int_person_activity') }} as activity
        on stored.person_id = activity.person_id
    {%- endif %}
),
{% endif %}

scoped as (
    {{ of_touched_people('interactions') }}
),

by_category as (
    select
        scoped.person_id,
        items.category,
        count(*) as interactions,
        sum(scoped.weight) as weighted_interactions
    from scoped
    inner join items
        on scoped.item_id = items.item_id
    where items.category is not null
    group by scoped.person_id, items.category
),

positive as (
    -- negative signals (removals) can cancel a category, never push it below zero
    select *
    from by_category
    where weighted_interactions > 0
),

shared as (
    select
        person_id,
        category,
        interactions,
        weighted_interactions,
        weighted_interactions / sum(weighted_interactions) over (partition by person_id)
            as affinity,
        ({{ items_hash_sql }}) as _items_hash,
        {{ _built_at() }} as _built_at
    from positive
)

select * from shared
{%- if is_incremental() %}

union all

-- a recomputed person left without a category: the post-hook deletes this marker row
select touched.person_id, null, null, null, null, null, {{ _built_at() }}
from touched
anti join shared
    on touched.person_id = shared.person_id
{%- endif %}
