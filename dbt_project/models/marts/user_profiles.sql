{#- The master record of every person: the published columns of int_user_profiles, which is
    kept per person between builds (a view: the 1.2M rows of L are not copied every night). -#}
{{ config(materialized='view') }}

select
    person_id,
    user_id,
    email_token,
    phone_token,
    first_name_token,
    last_name_token,
    address_token,
    birth_date,
    age,
    gender,
    city,
    postcode,
    region,
    country,
    signup_at,
    updated_at,
    first_seen_at,
    last_seen_at,
    n_events,
    n_source_records,
    n_source_systems,
    n_user_ids,
    n_anonymous_ids,
    is_identified,
    has_personalization_consent,
    personalization_consent_recorded_at
from {{ ref('int_user_profiles') }}
