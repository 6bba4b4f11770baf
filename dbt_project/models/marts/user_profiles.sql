{#-
    The fields chosen among a person's profile records by the configured survivorship rules
    (config.survivorship_rules, from identity.yaml `survivorship`), with their types. Values
    of most_frequent fields are counted as text and cast back. `age` is the reported age. The
    same list is SURVIVORSHIP_FIELDS in dagster_project/tunables.py, which validates the YAML.
-#}
{%- set survivorship_fields = {
    'user_id': 'varchar',
    'email_token': 'varchar',
    'phone_token': 'varchar',
    'first_name_token': 'varchar',
    'last_name_token': 'varchar',
    'address_token': 'varchar',
    'birth_date': 'date',
    'age': 'integer',
    'gender': 'varchar',
    'city': 'varchar',
    'postcode': 'varchar',
    'region': 'varchar',
    'country': 'varchar',
} -%}

with

identity_map as (
    select * from {{ ref('identity_map') }}
),

profiles as (
    select * from {{ ref('int_profiles_deduplicated') }}
),

activity as (
    -- every event of the person, up to the as-of time or after it
    select
        person_id,
        first_seen_at,
        last_seen_at,
        n_events_all as n_events
    from {{ ref('int_person_activity') }}
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

survivorship_rules as (
    select * from {{ ref('stg_config__survivorship_rules') }}
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

record_summaries as (
    select
        person_id,
        count(*) as n_source_records,
        count(distinct source_system) as n_source_systems,
        min(signup_at) as signup_at,
        max(updated_at) as updated_at
    from person_records
    group by person_id
),

field_rules as (
    -- one row: each field's rule (a field without a rule row is `most_recent`)
    select
        {%- for field_name in survivorship_fields %}
        coalesce(min(rule) filter (where field = '{{ field_name }}'), 'most_recent')
            as {{ field_name }}_rule{{ ',' if not loop.last }}
        {%- endfor %}
    from survivorship_rules
),

source_priorities as (
    -- one row per listed source: its place in each source_priority field's list
    select
        source_system,
        {%- for field_name in survivorship_fields %}
        min(priority) filter (where field = '{{ field_name }}')
            as {{ field_name }}_priority{{ ',' if not loop.last }}
        {%- endfor %}
    from survivorship_rules
    where rule = 'source_priority'
    group by source_system
),

ruled_records as (
    -- each record with the rules and its source's priorities (unlisted sources rank last)
    select
        ranked_records.*,
        field_rules.*,
        {%- for field_name in survivorship_fields %}
        coalesce(source_priorities.{{ field_name }}_priority, 2147483647)
            as {{ field_name }}_priority{{ ',' if not loop.last }}
        {%- endfor %}
    from ranked_records
    cross join field_rules
    left join source_priorities
        on lower(ranked_records.source_system) = source_priorities.source_system
),

ranked_values as (
    -- most_recent and source_priority, straight from the records: per field, the value of
    -- the record with the smallest (source priority under that rule, recency rank). Ranks are
    -- unique per person (one per record), so there are no ties. One aggregate over the
    -- records: unpivoting every field (14M rows at 1.4M records) cost twice the whole model.
    -- The pair is one integer, priority * 2^32 + rank (a priority is at most 2^31 - 1, a rank
    -- below 2^32): at L the aggregate took 6.0 s of operator time over a struct, 1.3 s so.
    select
        person_id,
        {%- for field_name in survivorship_fields %}
        arg_min(
            {{ field_name }},
            cast(
                case
                    when {{ field_name }}_rule = 'source_priority'
                        then {{ field_name }}_priority
                    else 0
                end as bigint
            ) * 4294967296 + recency_rank
        ) filter (
            where {{ field_name }} is not null and {{ field_name }}_rule <> 'most_frequent'
        ) as {{ field_name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from ruled_records
    group by person_id
),

frequent_record_values as (
    -- most_frequent fields only, unpivoted: one row per record and such field with a value
    {%- for field_name in survivorship_fields %}
    select
        person_id,
        '{{ field_name }}' as field,
        cast({{ field_name }} as varchar) as value,
        recency_rank
    from ruled_records
    where {{ field_name }} is not null and {{ field_name }}_rule = 'most_frequent'
    {%- if not loop.last %}

    union all
    {%- endif %}
    {%- endfor %}
),

frequent_values as (
    -- the value most records carry; a tie goes to the value with the most recent record
    select
        person_id,
        {%- for field_name, field_type in survivorship_fields.items() %}
        cast(
            arg_min(value, sort_key) filter (where field = '{{ field_name }}')
            as {{ field_type }}
        ) as {{ field_name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from (
        select
            person_id,
            field,
            value,
            struct_pack(frequency := -count(*), recency := min(recency_rank)) as sort_key
        from frequent_record_values
        group by person_id, field, value
    )
    group by person_id
),

survived_values as (
    -- one row per person, the winning value of each field under its rule
    select
        ranked_values.person_id,
        {%- for field_name in survivorship_fields %}
        case
            when field_rules.{{ field_name }}_rule = 'most_frequent'
                then frequent_values.{{ field_name }}
            else ranked_values.{{ field_name }}
        end as {{ field_name }}{{ ',' if not loop.last }}
        {%- endfor %}
    from ranked_values
    cross join field_rules
    left join frequent_values
        on ranked_values.person_id = frequent_values.person_id
),

survived as (
    -- survivorship: per field, the value the configured rule picks
    select
        record_summaries.person_id,
        record_summaries.n_source_records,
        record_summaries.n_source_systems,
        {%- for field_name in survivorship_fields if field_name != 'age' %}
        survived_values.{{ field_name }},
        {%- endfor %}
        survived_values.age as reported_age,
        record_summaries.signup_at,
        record_summaries.updated_at
    from record_summaries
    left join survived_values
        on record_summaries.person_id = survived_values.person_id
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
