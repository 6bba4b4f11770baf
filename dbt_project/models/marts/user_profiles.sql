with

identity_map as (
    select * from {{ ref('identity_map') }}
),

profiles as (
    select * from {{ ref('int_profiles_deduplicated') }}
),

events as (
    select * from {{ ref('int_events_identified') }}
),

consents as (
    select * from {{ ref('int_consent_current') }}
),

run_settings as (
    select * from {{ ref('int_run_settings_resolved') }}
),

junk_values as (
    select * from {{ ref('stg_config__identity_junk_values') }}
),

people as (
    select
        person_id,
        count(case when identifier_type = 'record_id' then 1 end) as n_record_ids,
        count(case when identifier_type = 'user_id' then 1 end) as n_user_ids,
        count(case when identifier_type = 'anonymous_id' then 1 end) as n_anonymous_ids
    from identity_map
    group by person_id
),

person_records as (
    -- a junk email / phone (`test@example.com`) is nobody's contact detail
    select
        identity_map.person_id,
        profiles.record_id,
        profiles.source_system,
        profiles.user_id,
        case when junk_emails.junk_value is null then profiles.email_token end as email_token,
        case when junk_phones.junk_value is null then profiles.phone_token end as phone_token,
        profiles.first_name_token,
        profiles.last_name_token,
        profiles.address_token,
        profiles.birth_date,
        profiles.age,
        profiles.gender,
        profiles.city,
        profiles.postcode,
        profiles.region,
        profiles.country,
        profiles.signup_at,
        profiles.updated_at,
        profiles._loaded_at
    from identity_map
    inner join profiles
        on identity_map.identifier_type = 'record_id'
        and identity_map.identifier = profiles.record_id
        and coalesce(identity_map.source_system, '') = coalesce(profiles.source_system, '')
    left join junk_values as junk_emails
        on profiles.email_token = junk_emails.junk_value
    left join junk_values as junk_phones
        on profiles.phone_token = junk_phones.junk_value
),

ranked_records as (
    select
        person_records.*,
        row_number() over (
            partition by person_records.person_id
            order by
                person_records.updated_at desc nulls last,
                person_records._loaded_at desc,
                person_records.source_system,
                person_records.record_id
        ) as recency_rank
    from person_records
),

survived as (
    -- survivorship: per field, the value of the most recently updated record that has one
    select
        person_id,
        count(*) as n_source_records,
        count(distinct source_system) as n_source_systems,
        arg_min(user_id, recency_rank) filter (where user_id is not null) as user_id,
        arg_min(email_token, recency_rank) filter (where email_token is not null)
            as email_token,
        arg_min(phone_token, recency_rank) filter (where phone_token is not null)
            as phone_token,
        arg_min(first_name_token, recency_rank) filter (where first_name_token is not null)
            as first_name_token,
        arg_min(last_name_token, recency_rank) filter (where last_name_token is not null)
            as last_name_token,
        arg_min(address_token, recency_rank) filter (where address_token is not null)
            as address_token,
        arg_min(birth_date, recency_rank) filter (where birth_date is not null) as birth_date,
        arg_min(age, recency_rank) filter (where age is not null) as reported_age,
        arg_min(gender, recency_rank) filter (where gender is not null) as gender,
        arg_min(city, recency_rank) filter (where city is not null) as city,
        arg_min(postcode, recency_rank) filter (where postcode is not null) as postcode,
        arg_min(region, recency_rank) filter (where region is not null) as region,
        arg_min(country, recency_rank) filter (where country is not null) as country,
        min(signup_at) as signup_at,
        max(updated_at) as updated_at
    from ranked_records
    group by person_id
),

aged as (
    -- age on the as-of date (today only when there is no event and no configured as-of)
    select
        survived.*,
        {{ age_in_years(
            'survived.birth_date',
            'cast(coalesce(run_settings.as_of, current_timestamp) as date)'
        ) }} as age_from_birth_date
    from survived
    cross join run_settings
),

activity as (
    select
        person_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as n_events
    from events
    where person_id is not null
    group by person_id
),

person_subjects as (
    -- everything a consent can name: the person's user ids and the emails of their records
    select
        person_id,
        'user_id' as subject_type,
        identifier as subject_id
    from identity_map
    where identifier_type = 'user_id'

    union

    select
        person_id,
        'email_token' as subject_type,
        email_token as subject_id
    from person_records
    where email_token is not null
),

ranked_personalization_consents as (
    select
        person_subjects.person_id,
        consents.is_granted,
        consents.recorded_at,
        -- the latest decision wins; on a tie a withdrawal beats a grant
        row_number() over (
            partition by person_subjects.person_id
            order by consents.recorded_at desc nulls last, consents.is_granted
        ) as recency_rank
    from person_subjects
    inner join consents
        on person_subjects.subject_type = consents.subject_type
        and person_subjects.subject_id = consents.subject_id
    where consents.purpose = 'personalization'
),

personalization_consents as (
    select
        person_id,
        is_granted,
        recorded_at
    from ranked_personalization_consents
    where recency_rank = 1
),

final as (
    select
        people.person_id,
        aged.user_id,
        aged.email_token,
        aged.phone_token,
        aged.first_name_token,
        aged.last_name_token,
        aged.address_token,
        aged.birth_date,
        coalesce(
            case
                when aged.age_from_birth_date
                    between {{ var('min_valid_age') }} and {{ var('max_valid_age') }}
                    then aged.age_from_birth_date
            end,
            aged.reported_age
        ) as age,
        aged.gender,
        aged.city,
        aged.postcode,
        aged.region,
        aged.country,
        aged.signup_at,
        aged.updated_at,
        activity.first_seen_at,
        activity.last_seen_at,
        coalesce(activity.n_events, 0) as n_events,
        coalesce(aged.n_source_records, 0) as n_source_records,
        coalesce(aged.n_source_systems, 0) as n_source_systems,
        people.n_user_ids,
        people.n_anonymous_ids,
        people.n_user_ids > 0 or coalesce(aged.n_source_records, 0) > 0 as is_identified,
        coalesce(
            personalization_consents.is_granted,
            {{ var('consent_default_personalization') }}
        ) as has_personalization_consent,
        personalization_consents.recorded_at as personalization_consent_recorded_at
    from people
    left join aged
        on people.person_id = aged.person_id
    left join activity
        on people.person_id = activity.person_id
    left join personalization_consents
        on people.person_id = personalization_consents.person_id
)

select * from final
