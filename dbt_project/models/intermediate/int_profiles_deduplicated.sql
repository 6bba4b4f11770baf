{#-
    One row per profile record, recomputed only for the records whose staged versions changed
    (a new version, a version erased or removed) or that are erased, and for every record when
    its SQL or the staging view's changed (macros/inputs_fingerprint.sql). A night lands events,
    not profiles: at L the whole rebuild took 10 s of a night after an erasure, whose sweep
    deletes raw rows. Configured in dbt_project.yml (`kept_per_key`).
-#}
{{ config(post_hook="{{ replace_recomputed_keys(['record_id', 'source_system']) }}") }}
{%- set fingerprint = inputs_fingerprint(views=[ref('stg_profiles__profiles')]) %}
{%- set keep = stored_rows_current(fingerprint) %}

with

staged_profiles as not materialized (
    select * from {{ ref('stg_profiles__profiles') }}
),

erased_identifiers as (
    select * from {{ ref('int_erased_identifiers') }}
),

erased_records as (
    select distinct
        identifier as record_id,
        coalesce(source_system, '') as source_system_key
    from erased_identifiers
    where identifier_type = 'record_id'
),

record_hashes as (
    -- what each record's row is made of: its staged versions
    {{ key_hashes('staged_profiles', ['record_id', 'source_system']) }}
),

{% if keep %}
changed_records as (
    {{ changed_keys('record_hashes', ['record_id', 'source_system']) }}

    union

    -- an erased record loses its row
    select record_id, nullif(source_system_key, '') as source_system
    from erased_records
),

profiles as (
    select staged_profiles.*
    from staged_profiles
    semi join changed_records
        on staged_profiles.record_id = changed_records.record_id
        and staged_profiles.source_system is not distinct from changed_records.source_system
),
{% else %}
profiles as not materialized (
    select * from staged_profiles
),
{% endif %}

ranked as (
    select
        profiles.*,
        row_number() over (
            partition by profiles.source_system, profiles.record_id
            order by
                profiles.updated_at desc nulls last,
                profiles._loaded_at desc,
                profiles._file desc,
                profiles._line desc
        ) as version_rank,
        count(*) over (partition by profiles.source_system, profiles.record_id) as n_versions
    from profiles
),

deduplicated as (
    -- the newest version of a record (by its own updated_at, then by delivery) wins
    select *
    from ranked
    where version_rank = 1
),

retained as (
    select
        deduplicated.record_id,
        deduplicated.source_system,
        deduplicated.user_id,
        deduplicated.email_token,
        deduplicated.phone_token,
        deduplicated.first_name_token,
        deduplicated.last_name_token,
        deduplicated.address_token,
        deduplicated.birth_date,
        deduplicated.age,
        deduplicated.gender,
        deduplicated.city,
        deduplicated.postcode,
        deduplicated.region,
        deduplicated.country,
        deduplicated.signup_at,
        deduplicated.updated_at,
        deduplicated.n_versions,
        deduplicated._file,
        deduplicated._line,
        deduplicated._loaded_at
    from deduplicated
    left join erased_records
        on deduplicated.record_id = erased_records.record_id
        and coalesce(deduplicated.source_system, '') = erased_records.source_system_key
    where erased_records.record_id is null
)

{{ kept_per_key_rows('retained', ['record_id', 'source_system'], 'record_hashes', fingerprint,
    changed='changed_records' if keep else none) }}
