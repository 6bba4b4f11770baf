{#- Per person: may their data count in anonymous aggregates? The analytics consent
    int_user_profiles resolves beside the personalization one, from the same subjects (the
    person's user ids and record emails): a view of its columns. As a table of its own, it
    joined the subjects and the consents a second time and wrote 1.2M rows every night at L
    (4.2 s of session 47's bench night). -#}
{{ config(materialized='view') }}

select
    person_id,
    has_analytics_consent,
    analytics_consent_recorded_at
from {{ ref('int_user_profiles') }}
