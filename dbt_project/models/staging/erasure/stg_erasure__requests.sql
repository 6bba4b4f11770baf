with

erasure as (
    select * from {{ source('erasure', 'erasure') }}
),

renamed as (
    select
        {{ clean_string('user_id') }} as user_id,
        lower({{ clean_string('email_token') }}) as email_token,
        _requested_at as requested_at,
        _file,
        _line,
        _loaded_at
    from erasure
)

select * from renamed
