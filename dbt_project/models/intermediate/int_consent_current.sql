{#- Rebuilt only when something it reads changed, like int_profiles_deduplicated: a night
    lands no consent, and this rebuild took 4 s of L's night. -#}
{%- set fingerprint = inputs_fingerprint(
    tables=[source('consent', 'consent'), ref('int_erased_identifiers')],
    views=[ref('stg_consent__consents')],
) %}

with

consents as (
    select * from {{ ref('stg_consent__consents') }}
),

erased_identifiers as (
    select * from {{ ref('int_erased_identifiers') }}
),

by_subject as (
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

retained as (
    select by_subject.*
    from by_subject
    left join erased_identifiers
        on by_subject.subject_type = erased_identifiers.identifier_type
        and by_subject.subject_id = erased_identifiers.identifier
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

{{ unless_inputs_unchanged('current_consents', fingerprint) }}
