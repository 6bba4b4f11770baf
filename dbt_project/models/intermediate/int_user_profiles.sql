{#-
    The master record of every person: the fields their profile records' survivorship picked
    (int_profiles_survived, kept per person while their records are unchanged), the age on the
    as-of date, their activity (int_person_activity) and their personalization and analytics
    consents. `user_profiles` is the view of its published columns,
    `int_analytics_consents_resolved` the view of the analytics consent.

    Incremental, per person: a person's row depends only on their identifiers (identity_map),
    their surviving fields (int_profiles_survived's `_inputs_hash`), their age on the as-of
    date, their activity, their two consents, the valid-age bounds, the consent defaults and
    this SQL. `_inputs_hash` is a hash of all of them per person; a build recomputes the
    people whose hash changed or who are new, and deletes the rows of the people identity_map
    no longer has (a removal row, which the post-hook deletes). The consents and the age are
    computed for everyone (they are cheap; writing is not): at L on session 47's machine
    user_profiles took 11.4 s a night and int_analytics_consents_resolved 4.2 s, writing 1.2M
    rows each, of which about 75k changed (the people active that day, and birthdays).
-#}
{{ config(
    post_hook=["{% if is_incremental() %}delete from {{ this }} where _is_removal{% endif %}"],
) }}

with

-- `not materialized`, as `survived`: each is read twice, and DuckDB would materialize every
-- column of every row of it; inlined, each reader scans only the columns it needs. With the
-- `union all` of `person_subjects`, the query took 2.9 s against 3.7-4.2 s at 1M people (the
-- same rows; computed alone, without writing the table).
identity_map as not materialized (
    select * from {{ ref('identity_map') }}
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

people as (
    select
        person_id,
        count(case when identifier_type = 'record_id' then 1 end) as n_record_ids,
        count(case when identifier_type = 'user_id' then 1 end) as n_user_ids,
        count(case when identifier_type = 'anonymous_id' then 1 end) as n_anonymous_ids,
        -- which identifiers: a user id bringing a consent, or moving to another person
        bit_xor(hash(identifier_type, identifier, source_system)) as identifiers_hash
    from identity_map
    group by person_id
),

survived as not materialized (
    select * from {{ ref('int_profiles_survived') }}
),

ages as (
    -- the age on the as-of date (today only when there is no event and no configured as-of):
    -- the birth date's when it is a valid age, else the reported one
    select
        survived.person_id,
        coalesce(
            case
                when {{ age_in_years(
                    'survived.birth_date',
                    'cast(coalesce(run_settings.as_of, current_timestamp) as date)'
                ) }} between {{ var('min_valid_age') }} and {{ var('max_valid_age') }}
                    then {{ age_in_years(
                        'survived.birth_date',
                        'cast(coalesce(run_settings.as_of, current_timestamp) as date)'
                    ) }}
            end,
            survived.reported_age
        ) as age
    from survived
    cross join run_settings
),

person_subjects as (
    -- everything a consent can name: the person's user ids and the emails of their records.
    -- `union all`: a subject named twice joins the same consent rows twice, and the aggregate
    -- picks one of two equal rows (a `union` deduplicated 1.8M rows at 1M people)
    select
        person_id,
        'user_id' as subject_type,
        identifier as subject_id
    from identity_map
    where identifier_type = 'user_id'

    union all

    select
        person_id,
        'email_token' as subject_type,
        unnest(email_tokens) as subject_id
    from survived
),

{#- The deciding consent of a purpose: the latest recorded (a time beats none), and on a tie a
    withdrawal beats a grant. One aggregate per person instead of a window over the 1.9M
    (person, consent) rows of L and a grouping after it. -#}
{%- set deciding = "struct_pack(at := coalesce(consents.recorded_at, '-infinity'::timestamp), "
    ~ "withdrawn := not consents.is_granted)" %}
resolved_consents as (
    -- both purposes a person's row says (int_analytics_consents_resolved is a view of the
    -- analytics one: one join of the subjects and the consents, where it was two models)
    select
        person_subjects.person_id,
        {%- for purpose in ['personalization', 'analytics'] %}
        arg_max(consents.is_granted, {{ deciding }})
            filter (where consents.purpose = '{{ purpose }}') as {{ purpose }}_granted,
        max(consents.recorded_at)
            filter (where consents.purpose = '{{ purpose }}') as {{ purpose }}_recorded_at
        {{- ',' if not loop.last }}
        {%- endfor %}
    from person_subjects
    inner join consents
        on person_subjects.subject_type = consents.subject_type
        and person_subjects.subject_id = consents.subject_id
    where consents.purpose in ('personalization', 'analytics')
    group by person_subjects.person_id
),

inputs as (
    -- what each person's row is made of
    select
        people.person_id,
        hash(
            '{{ local_md5(model.raw_code) }}',
            {{ var('min_valid_age') }},
            {{ var('max_valid_age') }},
            {{ var('consent_default_personalization') }},
            {{ var('consent_default_analytics') }},
            people.n_record_ids,
            people.n_user_ids,
            people.n_anonymous_ids,
            people.identifiers_hash,
            survived._inputs_hash,
            ages.age,
            activity.first_seen_at,
            activity.last_seen_at,
            activity.n_events,
            resolved_consents.personalization_granted,
            resolved_consents.personalization_recorded_at,
            resolved_consents.analytics_granted,
            resolved_consents.analytics_recorded_at
        ) as _inputs_hash
    from people
    left join survived
        on people.person_id = survived.person_id
    left join ages
        on people.person_id = ages.person_id
    left join activity
        on people.person_id = activity.person_id
    left join resolved_consents
        on people.person_id = resolved_consents.person_id
),

{% if is_incremental() %}
touched as (
    select
        coalesce(inputs.person_id, stored.person_id) as person_id,
        inputs.person_id is null as is_gone
    from inputs
    full outer join (select person_id, _inputs_hash from {{ this }}) as stored
        on inputs.person_id = stored.person_id
    where inputs._inputs_hash is distinct from stored._inputs_hash
),

scoped_people as (
    select inputs.*
    from inputs
    semi join touched
        on inputs.person_id = touched.person_id
),
{% else %}
scoped_people as not materialized (
    select * from inputs
),
{% endif %}

final as (
    select
        scoped_people.person_id,
        survived.user_id,
        survived.email_token,
        survived.phone_token,
        survived.first_name_token,
        survived.last_name_token,
        survived.address_token,
        survived.birth_date,
        ages.age,
        survived.gender,
        survived.city,
        survived.postcode,
        survived.region,
        survived.country,
        survived.signup_at,
        survived.updated_at,
        activity.first_seen_at,
        activity.last_seen_at,
        coalesce(activity.n_events, 0) as n_events,
        coalesce(survived.n_source_records, 0) as n_source_records,
        coalesce(survived.n_source_systems, 0) as n_source_systems,
        people.n_user_ids,
        people.n_anonymous_ids,
        people.n_user_ids > 0 or coalesce(survived.n_source_records, 0) > 0 as is_identified,
        coalesce(
            resolved_consents.personalization_granted,
            {{ var('consent_default_personalization') }}
        ) as has_personalization_consent,
        resolved_consents.personalization_recorded_at as personalization_consent_recorded_at,
        -- may the person's data count in anonymous aggregates (int_analytics_consents_resolved)
        coalesce(
            resolved_consents.analytics_granted,
            {{ var('consent_default_analytics') }}
        ) as has_analytics_consent,
        resolved_consents.analytics_recorded_at as analytics_consent_recorded_at,
        scoped_people._inputs_hash,
        false as _is_removal,
        -- which build (re)wrote the row: the publish step and the profiles' Great Expectations
        -- suite read the rows written since they last did
        {{ _built_at() }} as _built_at
    from scoped_people
    inner join people
        on scoped_people.person_id = people.person_id
    left join survived
        on scoped_people.person_id = survived.person_id
    left join ages
        on scoped_people.person_id = ages.person_id
    left join activity
        on scoped_people.person_id = activity.person_id
    left join resolved_consents
        on scoped_people.person_id = resolved_consents.person_id
)

select * from final
{%- if is_incremental() %}

union all by name

-- a person identity_map no longer has: the row replaces theirs, and the post-hook deletes it
select
    touched.person_id,
    true as _is_removal
from touched
where touched.is_gone
{%- endif %}
