{#-
    The master record's fields: per person, the value each configured survivorship rule
    (config.survivorship_rules, from identity.yaml `survivorship`) picks among their profile
    records, with their types. Values of most_frequent fields are counted as text and cast
    back. `reported_age` is the age a record states; user_profiles derives the age on the as-of
    date. The same list is SURVIVORSHIP_FIELDS in dagster_project/tunables.py, which validates
    the YAML.

    Incremental: a person's row depends only on their records (identity_map's record_ids and
    int_profiles_deduplicated's rows), the junk values, the rules and this SQL. `_inputs_hash`
    is a hash of all of them per person; a run recomputes the people whose hash changed (new,
    edited, moved or removed records, or a changed rule or junk value, which changes every
    hash) and keeps the others' rows. A recomputed person left without records is deleted.
    At L, the full build took most of user_profiles' 11.5 s a night, for the few people whose
    records changed.
-#}
{{ config(
    post_hook=[
        "{% if is_incremental() %}delete from {{ this }} where n_source_records = 0{% endif %}",
    ],
) }}

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

junk_values as (
    select * from {{ ref('stg_config__identity_junk_values') }}
),

survivorship_rules as (
    select * from {{ ref('stg_config__survivorship_rules') }}
),

record_links as (
    select
        identity_map.person_id,
        profiles.*
    from identity_map
    inner join profiles
        on identity_map.identifier_type = 'record_id'
        and identity_map.identifier = profiles.record_id
        and coalesce(identity_map.source_system, '') = coalesce(profiles.source_system, '')
),

shared_inputs as (
    -- what every person's row depends on besides their records
    select hash(
        '{{ local_md5(model.raw_code) }}',
        (select string_agg(junk_value, '|' order by junk_value) from junk_values),
        (
            select string_agg(concat_ws('|', field, rule, source_system, priority), ','
                order by field, rule, source_system, priority)
            from survivorship_rules
        )
    ) as shared_hash
),

inputs as (
    select
        record_links.person_id,
        xor(bit_xor(hash(
            record_links.record_id, record_links.source_system, record_links.user_id,
            record_links.email_token, record_links.phone_token, record_links.first_name_token,
            record_links.last_name_token, record_links.address_token, record_links.birth_date,
            record_links.age, record_links.gender, record_links.city, record_links.postcode,
            record_links.region, record_links.country, record_links.signup_at,
            record_links.updated_at, record_links._loaded_at
        )), any_value(shared_inputs.shared_hash)) as _inputs_hash
    from record_links
    cross join shared_inputs
    group by record_links.person_id
),

{% if is_incremental() %}
touched as (
    select coalesce(inputs.person_id, stored.person_id) as person_id
    from inputs
    full outer join {{ this }} as stored
        on inputs.person_id = stored.person_id
    where inputs._inputs_hash is distinct from stored._inputs_hash
),
{% endif %}

scoped_links as (
    {{ of_touched_people('record_links') }}
),

person_records as (
    -- a junk email / phone (`test@example.com`) is nobody's contact detail
    select
        profiles.person_id,
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
    from scoped_links as profiles
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
        max(updated_at) as updated_at,
        -- what a consent can name besides the user ids: every (non-junk) email of the records
        list(distinct email_token) filter (where email_token is not null) as email_tokens
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

final as (
    select
        record_summaries.person_id,
        record_summaries.n_source_records,
        record_summaries.n_source_systems,
        {%- for field_name in survivorship_fields if field_name != 'age' %}
        survived_values.{{ field_name }},
        {%- endfor %}
        survived_values.age as reported_age,
        record_summaries.signup_at,
        record_summaries.updated_at,
        record_summaries.email_tokens,
        inputs._inputs_hash
    from record_summaries
    left join survived_values
        on record_summaries.person_id = survived_values.person_id
    left join inputs
        on record_summaries.person_id = inputs.person_id
    {%- if is_incremental() %}

    union all by name

    -- a recomputed person left without records: the post-hook deletes the stored row
    select
        touched.person_id,
        0 as n_source_records,
        0 as n_source_systems
    from touched
    anti join record_summaries
        on touched.person_id = record_summaries.person_id
    {%- endif %}
)

select * from final
