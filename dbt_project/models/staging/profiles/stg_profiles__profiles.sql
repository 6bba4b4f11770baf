{%- set min_age = var('min_valid_age') -%}
{%- set max_age = var('max_valid_age') -%}

with

profiles as (
    select * from {{ source('profiles', 'profiles') }}
),

gender_vocabulary as (
    -- gender has no config mapping yet; spellings mapped to null are "not said", not invalid
    select * from (
        values
            ('f', 'female'), ('female', 'female'), ('woman', 'female'), ('w', 'female'),
            ('m', 'male'), ('male', 'male'), ('man', 'male'),
            ('x', 'other'), ('d', 'other'), ('other', 'other'), ('nonbinary', 'other'),
            ('nb', 'other'), ('diverse', 'other'),
            ('u', null), ('unknown', null), ('na', null), ('none', null),
            ('unspecified', null), ('notspecified', null), ('prefernottosay', null)
    ) as vocabulary (gender_key, gender)
),

renamed as (
    select
        {{ clean_string('record_id') }} as record_id,
        {{ clean_string('source_system') }} as source_system,
        {{ clean_string('user_id') }} as user_id,
        lower({{ clean_string('email_token') }}) as email_token,
        lower({{ clean_string('phone_token') }}) as phone_token,
        lower({{ clean_string('first_name_token') }}) as first_name_token,
        lower({{ clean_string('last_name_token') }}) as last_name_token,
        lower({{ clean_string('address_token') }}) as address_token,
        {{ clean_string('birth_date') }} as birth_date_raw,
        cast(try_strptime({{ trimmed('birth_date') }}, '%Y-%m-%d') as date) as birth_date_parsed,
        {{ clean_string('age') }} as age_raw,
        cast(floor(try_cast({{ trimmed('age') }} as double)) as integer) as age_parsed,
        {{ clean_string('gender') }} as gender_raw,
        {{ normalize_key('gender') }} as gender_key,
        {{ clean_string('city') }} as city,
        {{ clean_string('postcode') }} as postcode,
        {{ clean_string('region') }} as region,
        {{ clean_string('country') }} as country,
        _signup_at as signup_at,
        _updated_at as updated_at,
        extra,
        _file,
        _line,
        _loaded_at
    from profiles
),

validated as (
    select
        renamed.record_id,
        renamed.source_system,
        renamed.user_id,
        renamed.email_token,
        renamed.phone_token,
        renamed.first_name_token,
        renamed.last_name_token,
        renamed.address_token,
        renamed.birth_date_parsed as birth_date,
        renamed.birth_date_raw is not null
            and renamed.birth_date_parsed is null as is_birth_date_invalid,
        case
            when renamed.age_parsed between {{ min_age }} and {{ max_age }}
                then renamed.age_parsed
        end as age,
        renamed.age_raw is not null
            and coalesce(renamed.age_parsed not between {{ min_age }} and {{ max_age }}, true)
            as is_age_invalid,
        gender_vocabulary.gender,
        renamed.gender_raw,
        renamed.gender_raw is not null
            and gender_vocabulary.gender_key is null as is_gender_invalid,
        renamed.city,
        renamed.postcode,
        renamed.region,
        renamed.country,
        renamed.signup_at,
        renamed.updated_at,
        renamed.extra,
        renamed._file,
        renamed._line,
        renamed._loaded_at
    from renamed
    left join gender_vocabulary
        on renamed.gender_key = gender_vocabulary.gender_key
)

select * from validated
