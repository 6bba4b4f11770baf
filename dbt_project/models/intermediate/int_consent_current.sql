{#- Recomputed only for the subjects (a user, an email) whose consent rows changed or who are
    erased, like int_profiles_deduplicated: a night lands no consent, and at L the whole
    rebuild took 8 s of a night after an erasure. -#}
{{ config(post_hook="{{ replace_recomputed_keys(['subject_type', 'subject_id']) }}") }}
{%- set fingerprint = inputs_fingerprint(views=[ref('stg_consent__consents')]) %}
{%- set keep = stored_rows_current(fingerprint) %}

with

consents as not materialized (
    select * from {{ ref('stg_consent__consents') }}
),

erased_identifiers as (
    select * from {{ ref('int_erased_identifiers') }}
),

by_subject as not materialized (
    -- a consent naming both a user and an email applies to each of them
    select
        'user_id' as subject_type,
        user_id as subject_id,
        purpose,
        is_granted,
        recorded_at,
        source,
        _loaded_at,
        _file,
        _line
    from consents
    where user_id is not null
        and purpose is not null
        and is_granted is not null

    union all

    select
        'email_token' as subject_type,
        email_token as subject_id,
        purpose,
        is_granted,
        recorded_at,
        source,
        _loaded_at,
        _file,
        _line
    from consents
    where email_token is not null
        and purpose is not null
        and is_granted is not null
),

subject_hashes as (
    -- what each subject's rows are made of: the consent rows naming them
    {{ key_hashes('by_subject', ['subject_type', 'subject_id']) }}
),

{% if keep %}
changed_subjects as (
    {{ changed_keys('subject_hashes', ['subject_type', 'subject_id']) }}

    union

    -- an erased subject loses their rows
    select identifier_type as subject_type, identifier as subject_id
    from erased_identifiers
    where identifier_type in ('user_id', 'email_token')
),

scoped as (
    select by_subject.*
    from by_subject
    semi join changed_subjects
        on by_subject.subject_type = changed_subjects.subject_type
        and by_subject.subject_id = changed_subjects.subject_id
),
{% else %}
scoped as not materialized (
    select * from by_subject
),
{% endif %}

retained as (
    select scoped.*
    from scoped
    left join erased_identifiers
        on scoped.subject_type = erased_identifiers.identifier_type
        and scoped.subject_id = erased_identifiers.identifier
    where erased_identifiers.identifier is null
),

ranked as (
    select
        retained.*,
        row_number() over (
            partition by retained.subject_type, retained.subject_id, retained.purpose
            order by
                retained.recorded_at desc nulls last,
                retained._loaded_at desc,
                retained._file desc,
                retained._line desc
        ) as recency_rank
    from retained
),

current_consents as (
    select
        subject_type,
        subject_id,
        purpose,
        is_granted,
        recorded_at,
        source
    from ranked
    where recency_rank = 1
)

{{ kept_per_key_rows('current_consents', ['subject_type', 'subject_id'], 'subject_hashes',
    fingerprint, changed='changed_subjects' if keep else none) }}
