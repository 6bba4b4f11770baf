with

consent as (
    select * from {{ source('consent', 'consent') }}
),

renamed as (
    select
        {{ clean_string('user_id') }} as user_id,
        lower({{ clean_string('email_token') }}) as email_token,
        -- `Personalisation` and `personalization` are one purpose
        replace({{ slugify('purpose') }}, 'personalisation', 'personalization') as purpose,
        case
            when lower(trim(granted)) in ('granted', 'opt_in', 'optin', 'accepted') then true
            when lower(trim(granted)) in ('denied', 'opt_out', 'optout', 'withdrawn', 'revoked')
                then false
            else {{ parse_boolean('granted') }}
        end as is_granted,
        {{ clean_string('granted') }} as granted_raw,
        _recorded_at as recorded_at,
        {{ clean_string('source') }} as source,
        extra,
        _file,
        _line,
        _loaded_at
    from consent
),

flagged as (
    select
        user_id,
        email_token,
        purpose,
        is_granted,
        granted_raw is not null and is_granted is null as is_granted_invalid,
        recorded_at,
        source,
        extra,
        _file,
        _line,
        _loaded_at
    from renamed
)

select * from flagged
